# Power-on sequence of the STM32 board, frozen into the firmware and started by
# the frozen main.py (board/stm32/MEDSENTRY_F767ZI/main.py): the part of the
# board that is not on flash. It mirrors board/sim/rom_main.py:
#   read the console lock from OTP first (unknown = locked);
#   on a locked board, Ctrl-C never interrupts (main.py turned it off) and the
#   MicroPython REPL is never reached: whatever ends the application resets it;
#   mount the SPI NOR partitions (never format);
#   roll back an uncommitted provisioning on an open board;
#   bring up Ethernet, set the clock, install the egress guard;
#   hand over to the loader in the loader partition (it picks the A/B slot).
import sys

import machine
import micropython

from board.stm32 import flash as stmflash
from board.stm32.stmboard import Stm32Board

BOOT_BANNER = "[ROM] boot:"
# What provisioning writes before its commit (host_tools/provision/bundle.py).
UNCOMMITTED = ("identity.json", "identity.json.tmp", "identity", "console")


def _remove(path):
    import os

    if os.stat(path)[0] & 0x4000:
        for name in os.listdir(path):
            _remove(path + "/" + name)
        os.rmdir(path)
    else:
        os.remove(path)


def rollback_uncommitted(state_dir):
    import os

    removed = 0
    for name in UNCOMMITTED:
        path = state_dir + "/" + name
        try:
            os.stat(path)
        except OSError:
            continue
        _remove(path)
        removed += 1
    return removed


def _halt(board, locked, why):
    print("FLASH ERROR:" if why.startswith("flash") else "HALT:", why)
    try:
        board.report_status({"state": "halted", "error": why})
    except (OSError, ValueError):
        pass
    if not locked:
        return  # an open board drops to the REPL for the technician
    while True:  # a locked board stays halted; a power cycle retries
        machine.idle()


def _boot(board, locked):
    board.boot_stage("mount")
    try:
        mounts = board.mount_flash()
    except stmflash.FlashError as e:
        return _halt(board, locked, "flash: %s" % e)
    if not locked and rollback_uncommitted(mounts["state"]):
        board.boot_notes.append("uncommitted provisioning rolled back")
    board.boot_stage("network")
    try:
        board.network_up()
    except OSError as e:
        # No network is not a reason to stop the pump's agent: it queues
        # telemetry on flash and retries (availability is security).
        board.boot_notes.append("network: %s" % e)
    note = board.sync_clock()
    if note:
        board.boot_notes.append(note)
    board.report_status({"state": "booted", "reset_reason": board.reset_reason(),
                         "lock": board.lock_state(), "rdp": board.rdp_level(), "notes": board.boot_notes})
    # Every socket from here on goes through the network guard.
    from board import netguard

    netguard.install()
    sys.path.insert(0, mounts["loader"])
    board.boot_stage("loader")
    import loader  # the loader partition: loader.mpy + bootstate.mpy

    loader.boot(board)


def main():
    # Locked until the OTP says otherwise: an error before that (a peripheral
    # that fails to initialise) resets the board, it never opens the REPL.
    locked = True
    board = None
    try:
        board = Stm32Board()
        # main.py turned Ctrl-C off; only an open (factory) board gets it back,
        # to interrupt the application into the REPL.
        locked = board.lock_state() != "open"
        if not locked:
            micropython.kbd_intr(3)
        print(BOOT_BANNER, board.reset_reason())
        _boot(board, locked)
    except BaseException as e:  # noqa: BLE001 - nothing may reach the REPL of a locked board
        if locked:
            _reset(board, "application ended: %r" % (e,))
        raise
    if locked:
        _reset(board, "application ended")


def _reset(board, why):
    if board is not None:
        board.reset(why)
    print("[ROM] reset:", why)
    machine.reset()
