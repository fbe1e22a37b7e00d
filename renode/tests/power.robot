*** Settings ***
Documentation     Power fails under the board: at once, and in the middle of flash writes.
...               The board must power up again on a mountable flash and run the agent.
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
Power Cut While Running Powers Up Again
    Board Is Running    pump-1
    Cut Power
    Wait For Line On Uart    [ROM] boot: power_cut
    Wait For Line On Uart    ^medsentry agent \\S+: slot a, reset power_cut    treatAsRegex=true

Power Cut At A Flash Write Keeps Committed Files
    Board Is Running    pump-1
    Interrupt To The REPL
    Board Prints    f = open('/data/keep.txt', 'w'); n = f.write('committed'); f.close(); print('written')    written
    Arm Power Cut At Flash Write    3
    Write Line To Uart    for i in range(20): f = open('/data/f%d' % i, 'w'); n = f.write('x' * 300); f.close()
    Wait For Line On Uart    [ROM] boot: power_cut
    Wait For Line On Uart    ^medsentry agent \\S+: slot a, reset power_cut    treatAsRegex=true
    Interrupt To The REPL
    Board Prints    print(open('/data/keep.txt').read())    committed
