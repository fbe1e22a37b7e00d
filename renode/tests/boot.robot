*** Settings ***
Documentation     Power-on to agent running, and a reset, on the medsentry board.
...               Renode: `renode-test renode/tests` (renode/run). Without Renode the
...               same file runs on the simulated board (renode/keywords/sim.resource).
Suite Setup       Setup
Suite Teardown    Teardown
Test Setup        Reset Emulation
Test Teardown     Test Teardown
Resource          ${RENODEKEYWORDS}
Resource          ${BOARD_KEYWORDS}
Resource          ${CURDIR}/common.resource

*** Variables ***
${BOARD_KEYWORDS}    ${CURDIR}/../keywords/renode_board.resource

*** Test Cases ***
Power On Runs The Agent From Slot A
    Board Is Running    pump-1

Reset Reboots Into The Same Slot With Files Kept
    Board Is Running    pump-1
    Interrupt To The REPL
    Board Prints    f = open('/data/note.txt', 'w'); n = f.write('kept across reset'); f.close(); print('written')    written
    Execute Command    machine Reset
    Wait For Line On Uart    [ROM] boot: reset
    Wait For Line On Uart    ^medsentry agent \\S+: slot a, reset reset    treatAsRegex=true
    Interrupt To The REPL
    Board Prints    print(open('/data/note.txt').read())    kept across reset
