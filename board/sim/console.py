# The UART console of the simulated board: MicroPython's friendly and raw
# REPL protocol, spoken on stdin/stdout (a pty), so that mpremote and
# pyserial work against the board exactly as against a real one.
#
# The unix port's own REPL cannot do a soft reset (Ctrl-D in the raw REPL
# ends the process), which mpremote needs; this console does it by asking
# the supervisor for a VM restart (exit code EXIT_SOFT_RESET_RAW): a fresh
# heap, the app not started, the raw REPL waiting - what a real board does.
import sys

from board.compat import format_exception
from board.sim.simboard import EXIT_SOFT_RESET, EXIT_SOFT_RESET_RAW

CTRL_A = 1
CTRL_B = 2
CTRL_C = 3
CTRL_D = 4
CTRL_E = 5
BANNER = b"MicroPython (medsentry sim board); Type \"help()\" for more information.\r\n"
MAX_CODE = 64 * 1024  # raw REPL code buffer cap
PASTE_WINDOW = 256  # raw-paste flow control: bytes per window (b"\x01" grants the next)

# Factory lock: the console lock fuse (board HAL lock_state(), outside flash,
# programmed once by provisioning). On a locked board the raw REPL - the
# channel mpremote and the provisioning tool use to run arbitrary code and
# write flash - refuses to run anything. It still speaks the protocol so
# that clients fail at once with a clear error instead of waiting forever
# (mpremote reads a pty without a timeout): entering shows LOCKED_MSG before
# the usual prompt, every code block is answered with LOCKED_MSG as its
# error, a soft reset only pretends. The friendly REPL is closed too, and
# Ctrl-C never interrupts the application (the tty never signals).
# Fail closed: a console whose lock state is unknown (no lock_state given,
# an unreadable fuse area, any answer but "open") is locked.
LOCKED_MSG = b"console locked: raw REPL disabled after factory provisioning\r\n"

# Linux termios local-mode flag: signal on Ctrl-C.
_ISIG = 0x1


def _set_isig(on):
    # While code runs, Ctrl-C must raise KeyboardInterrupt (tty ISIG on);
    # while the REPL reads, Ctrl-C must arrive as a byte (ISIG off).
    try:
        import termios
    except ImportError:
        return
    try:
        attr = termios.tcgetattr(0)
        if on:
            attr[3] |= _ISIG
        else:
            attr[3] &= ~_ISIG
        termios.tcsetattr(0, termios.TCSANOW, attr)
    except (OSError, TypeError, MemoryError):
        # MemoryError: an interrupt can land while the VM's heap is locked;
        # the REPL turns ISIG off again before it reads.
        pass


class Console:
    def __init__(self, inp, out, tty=False, lock_state=None):
        # tty: inp is the board's terminal (fd 0), whose Ctrl-C handling we switch.
        # lock_state: the HAL's lock_state (a callable returning "open" only
        # on a factory board); None = unknown = locked.
        self.tty = tty
        self.inp = inp
        self.out = out
        self.globals = {"__name__": "__main__"}
        self._lock_state = lock_state

    def locked(self):
        # Read from the fuse at every use, so the lock provisioning programs
        # takes effect at once, without a reboot; unknown is locked.
        if self._lock_state is None:
            return True
        try:
            return self._lock_state() != "open"
        except (OSError, ValueError):
            return True

    def _isig(self, on):
        if self.tty:
            _set_isig(on)

    def write(self, b):
        self.out.write(b)
        try:
            self.out.flush()
        except AttributeError:
            pass

    def write_traceback(self, e):
        self.write(format_exception(e).replace("\n", "\r\n").encode())

    def read_byte(self):
        b = self.inp.read(1)
        if not b:
            # The line hung up: nothing more will come.
            raise EOFError
        return b[0]

    def run(self, fn):
        # Run fn (the application) with Ctrl-C able to interrupt it - except
        # on a locked (provisioned) board, where a byte on the UART must not
        # stop the agent of a pump in use.
        self._isig(not self.locked())
        try:
            fn()
        except KeyboardInterrupt:
            if self.locked():
                raise  # the ROM resets: a locked board never reaches a REPL
            self.write(b"\r\nKeyboardInterrupt\r\n")
        except SystemExit:
            raise
        except Exception as e:  # the app crashed: show it, fall to the REPL
            self.write_traceback(e)

    def _exec(self, code, single=False):
        self._isig(not self.locked())
        try:
            if single:
                try:
                    value = eval(code, self.globals)
                    if value is not None:
                        self.write(repr(value).encode() + b"\r\n")
                    return
                except SyntaxError:
                    pass
            exec(code, self.globals)
        finally:
            self._isig(False)

    def raw_repl(self):
        # Returns "friendly" on Ctrl-B; exits the VM on soft reset.
        locked = self.locked()
        if locked:
            self.write(LOCKED_MSG)
        self.write(b"raw REPL; CTRL-B to exit\r\n>")
        buf = bytearray()
        while True:
            c = self.read_byte()
            if c == CTRL_B:
                self.write(b"\r\n")
                return "friendly"
            if c == CTRL_A:
                buf = bytearray()
                continue
            if c == CTRL_C:
                buf = bytearray()
                continue
            if c == CTRL_E and not buf:
                if locked:
                    # No raw paste on a locked board: nothing runs anyway.
                    self.write(b"R\x00")
                    continue
                if self.read_byte() == ord("A") and self.read_byte() == CTRL_A:
                    self._run_raw(self._raw_paste(), paste=True)
                else:
                    self.write(b"R\x00")
                continue
            if c == CTRL_D and locked:
                if not buf:
                    self.write(b"OK\r\nMPY: soft reboot\r\n" + LOCKED_MSG + b"raw REPL; CTRL-B to exit\r\n>")
                else:
                    self.write(b"OK\x04" + LOCKED_MSG + b"\x04>")
                buf = bytearray()
                continue
            if c == CTRL_D:
                if not buf:
                    self.write(b"OK\r\nMPY: soft reboot\r\n")
                    sys.exit(EXIT_SOFT_RESET_RAW)
                self._run_raw(buf)
                buf = bytearray()
                continue
            if len(buf) >= MAX_CODE:
                buf = bytearray()
                self.write(b"\x04code too large\x04>")
                continue
            buf.append(c)

    def _raw_paste(self):
        # MicroPython's raw-paste mode (what mpremote tries first): the host
        # sends at most PASTE_WINDOW bytes per b"\x01" it receives, then
        # Ctrl-D. Returns the code, or None when it exceeded MAX_CODE (the
        # device ends the paste early with Ctrl-D; the host answers Ctrl-D).
        self.write(b"R\x01" + bytes((PASTE_WINDOW & 0xFF, PASTE_WINDOW >> 8)))
        buf = bytearray()
        n = 0
        while True:
            c = self.read_byte()
            if c == CTRL_D:
                self.write(b"\x04")
                return buf
            if len(buf) >= MAX_CODE:
                self.write(b"\x04")
                while self.read_byte() != CTRL_D:
                    pass
                return None
            buf.append(c)
            n += 1
            if n == PASTE_WINDOW:
                n = 0
                self.write(b"\x01")

    def _run_raw(self, buf, paste=False):
        # Execute one raw-REPL command; output, Ctrl-D, errors, Ctrl-D, prompt.
        if buf is None:
            self.write(b"\x04code too large\x04>")
            return
        if not paste:
            self.write(b"OK")
        try:
            self._exec(bytes(buf).decode())
            self.write(b"\x04")
        except KeyboardInterrupt:
            self.write(b"\x04Traceback (most recent call last):\r\nKeyboardInterrupt: \r\n")
        except SystemExit:
            raise
        except BaseException as e:
            self.write(b"\x04")
            self.write_traceback(e)
        self.write(b"\x04>")

    def locked_console(self):
        # A provisioned board runs no code typed at its UART: only a soft
        # reset (Ctrl-D) and the raw REPL's refusal are answered.
        self.write(LOCKED_MSG)
        while True:
            c = self.read_byte()
            if c == CTRL_D:
                self.write(b"\r\nMPY: soft reboot\r\n")
                sys.exit(EXIT_SOFT_RESET)
            if c == CTRL_A:
                self.write(b"\r\n")
                self.raw_repl()
                self.write(LOCKED_MSG)

    def friendly_repl(self):
        self._isig(False)
        if self.locked():
            return self.locked_console()
        self.write(BANNER + b">>> ")
        line = bytearray()
        while True:
            c = self.read_byte()
            if c == CTRL_A:
                self.write(b"\r\n")
                self.raw_repl()
                if self.locked():
                    # Provisioning just locked the board from the raw REPL.
                    return self.locked_console()
                self.write(BANNER + b">>> ")
                line = bytearray()
            elif c == CTRL_B:
                self.write(b"\r\n" + BANNER + b">>> ")
                line = bytearray()
            elif c == CTRL_C:
                self.write(b"\r\nKeyboardInterrupt\r\n>>> ")
                line = bytearray()
            elif c == CTRL_D:
                if not line:
                    self.write(b"\r\nMPY: soft reboot\r\n")
                    sys.exit(EXIT_SOFT_RESET)
            elif c in (8, 127):
                if line:
                    line = line[:-1]
                    self.write(b"\x08 \x08")
            elif c in (10, 13):
                self.write(b"\r\n")
                if line:
                    try:
                        self._exec(bytes(line).decode(), single=True)
                    except SystemExit:
                        raise
                    except BaseException as e:
                        self.write_traceback(e)
                    if self.locked():
                        return self.locked_console()
                line = bytearray()
                self.write(b">>> ")
            elif c >= 32 and len(line) < 1024:
                line.append(c)
                self.write(bytes([c]))
