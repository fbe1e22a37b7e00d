# Power-on sequence of the simulated board - the part a real board keeps in
# its firmware: bring up the HAL, read the lock fuse, mount flash, hand over
# to the loader that lives on flash, and keep the UART console for when the
# application stops.
#
# The console never fails open:
# - the lock state comes from the OTP fuse area (outside flash) before
#   anything else; unknown is locked;
# - the tty never signals Ctrl-C at power-on (the supervisor clears ISIG at
#   every power-up); only Console.run turns it on, and only on an open board;
# - an interrupt that still arrives on a locked (or unknown) board resets the
#   board instead of opening the REPL;
# - provisioning commits by programming the lock fuse: identity files found
#   on a board whose fuse is open are an interrupted provisioning and are
#   removed before the console or the application run.
import os
import sys

from board.sim import flash as simflash
from board.sim.simboard import SimBoard, EXIT_FLASH_ERROR, EXIT_RESET
from board.sim.console import Console

# First line on the UART at every power-up (as a real ROM prints its reset
# cause): host tools see a board that rebooted under them.
BOOT_BANNER = b"[ROM] boot: "

# What provisioning writes before its commit (host_tools/provision/bundle.py).
UNCOMMITTED = ("identity.json", "identity.json.tmp", "identity", "console")


def rollback_uncommitted(state_dir):
    # Remove an uncommitted identity; returns how many entries went.
    removed = 0
    for name in UNCOMMITTED:
        path = state_dir + "/" + name
        try:
            mode = os.stat(path)[0]
        except OSError:
            continue
        if mode & 0x4000:
            from board.sim.factory import remove_tree  # only when there is something to roll back

            remove_tree(path)
            os.rmdir(path)
        else:
            os.remove(path)
        removed += 1
    return removed


def _boot(board, console):
    board.boot_stage("mount")
    try:
        mounts = board.mount_flash()
    except simflash.FlashError as e:
        # A board with broken flash stays halted and says why; formatting
        # would destroy identity and patient data a technician may recover.
        print("FLASH ERROR:", e)
        try:
            board.report_status({"state": "halted", "error": "flash: %s" % e})
        except OSError:
            pass
        sys.exit(EXIT_FLASH_ERROR)
    if not console.locked() and rollback_uncommitted(mounts["state"]):
        board.boot_notes.append("uncommitted provisioning rolled back")
        console.write(b"ROM: uncommitted provisioning rolled back\r\n")
    board.report_status({"state": "booted", "reset_reason": board.reset_reason(),
                         "lock": board.lock_state(), "notes": board.boot_notes})
    if board.boot_mode() == "raw_repl" and not console.locked():
        # Soft reset requested from the raw REPL: the app does not start.
        return console.raw_repl() == "friendly"
    sys.path.insert(0, mounts["loader"])
    # Every socket from here on goes through the network guard (the agent
    # arms its allow-list before its first connection).
    from board import netguard

    netguard.install()

    def boot():
        import loader

        loader.boot(board)

    board.boot_stage("loader")
    console.run(boot)
    return True


def main():
    board = SimBoard()
    board.boot_stage("rom")
    inp, out = board.console()
    console = Console(inp, out, tty=True, lock_state=board.lock_state)
    console.globals["board"] = board
    console.write(b"\r\n" + BOOT_BANNER + board.reset_reason().encode() + b"\r\n")
    try:
        if not _boot(board, console):
            return
    except KeyboardInterrupt:
        if console.locked():
            # Never a REPL on a locked or not-yet-known board: reset instead.
            sys.exit(EXIT_RESET)
        # Ctrl-C while a factory board boots: straight to the REPL.
        console.write(b"\r\nKeyboardInterrupt\r\n")
    except EOFError:
        return
    try:
        console.friendly_repl()
    except EOFError:
        pass
