# Power-on sequence of the simulated board - the part a real board keeps in
# its firmware: bring up the HAL, mount flash, hand over to the loader that
# lives on flash, and keep the UART console for when the application stops.
import sys

from board.sim import flash as simflash
from board.sim.simboard import SimBoard, EXIT_FLASH_ERROR
from board.sim.console import LOCK_FILE, Console


def main():
    board = SimBoard()
    inp, out = board.console()
    console = Console(inp, out, tty=True)
    console.globals["board"] = board
    try:
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
        console.lock_path = mounts["state"] + "/" + LOCK_FILE
        board.report_status({"state": "booted", "reset_reason": board.reset_reason()})
        if board.boot_mode() == "raw_repl":
            # Soft reset requested from the raw REPL: the app does not start.
            if console.raw_repl() != "friendly":
                return
        else:
            sys.path.insert(0, mounts["loader"])

            def boot():
                import loader

                loader.boot(board)

            console.run(boot)
    except KeyboardInterrupt:
        # Ctrl-C while still booting: straight to the REPL, like a real board.
        console.write(b"\r\nKeyboardInterrupt\r\n")
    except EOFError:
        return
    try:
        console.friendly_repl()
    except EOFError:
        pass
