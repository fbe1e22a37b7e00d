*** Settings ***
Documentation     Signed updates over TUF (renode/keywords/UpdateRepo.py serves the repository):
...               a power cut during the update, the trial boot
...               and its confirmation; a failing patch rolled back by the loader.
Suite Setup       Run Keywords    Setup    AND    Start Update Repository
Suite Teardown    Run Keywords    Stop Update Repository    AND    Teardown
Test Setup        Reset Emulation
Test Teardown     Test Teardown
Force Tags        update
Resource          ${RENODEKEYWORDS}
Resource          ${BOARD_KEYWORDS}
Resource          ${CURDIR}/common.resource

*** Variables ***
${BOARD_KEYWORDS}     ${CURDIR}/../keywords/renode_board.resource
${UPDATE_TIMEOUT}     180

*** Test Cases ***
Signed Update Survives A Power Cut Then Trial Boots And Is Confirmed
    Board Is Running    pump-1
    Configure Board For Updates
    Wait For Line On Uart    ^medsentry agent 1.0.0: slot a, reset reset    treatAsRegex=true
    Arm Power Cut At Flash Write    40
    Publish Release    1.1.0    2
    Wait For Line On Uart    [ROM] boot: power_cut    timeout=${UPDATE_TIMEOUT}
    Wait For Line On Uart    loader: trial boot of slot b (attempt 1)    timeout=${UPDATE_TIMEOUT}
    Wait For Line On Uart    medsentry agent 1.1.0: slot b (trial), reset soft
    Wait For Line On Uart    update: 1.1.0 confirmed    timeout=${UPDATE_TIMEOUT}

Failing Patch Is Rolled Back To The Confirmed Slot
    Board Is Running    pump-1
    Configure Board For Updates    trial_deadline_s=8
    Publish Release    1.1.0    2
    Publish Release    1.2.0    3    failing=true
    [Documentation]    The board may take the earlier good release first; whichever slot
    ...                the trial runs in, the loader must boot a confirmed older release.
    Wait For Line On Uart    ^medsentry agent 1\\.2\\.0: slot [ab] \\(trial\\), reset soft$    treatAsRegex=true    timeout=${UPDATE_TIMEOUT}
    Wait For Line On Uart    update: trial of 1.2.0 failed (sha256 known-answer test failed): rolling back    timeout=60
    Wait For Line On Uart    [ROM] boot: soft
    Wait For Line On Uart    ^medsentry agent 1\\.[01]\\.0: slot [ab], reset soft$    treatAsRegex=true
    Should Not Be On Uart    1.2.0: slot    timeout=10
