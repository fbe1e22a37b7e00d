"""Talk to a board's UART with pyserial: the raw REPL (Ctrl-A ... Ctrl-D),
as mpremote does. Used by tests, provisioning and `medsentry sim exec`."""
from __future__ import annotations

import time

import serial


class UartError(RuntimeError):
    """The port cannot be opened or the board does not answer as a REPL."""


class BoardRebooted(UartError):
    """The board printed its ROM boot line while we waited: it reset or lost power."""


# board/sim/rom_main.py BOOT_BANNER: the first line of every power-up.
BOOT_BANNER = b"[ROM] boot: "


class RemoteError(RuntimeError):
    """Code run on the board raised; .traceback holds the board's traceback."""

    def __init__(self, traceback: str):
        super().__init__(traceback.strip().splitlines()[-1] if traceback.strip() else "error on board")
        self.traceback = traceback


class Uart:
    def __init__(self, port: str, timeout: float = 10.0):
        self.port = port
        self.timeout = timeout
        try:
            self.ser = serial.Serial(port, 115200, timeout=0.05, exclusive=True)
        except serial.SerialException as e:
            msg = str(e)
            if "lock" in msg.lower() or "busy" in msg.lower() or "Resource temporarily" in msg:
                raise UartError(f"serial port {port} is in use by another program") from None
            raise UartError(f"cannot open serial port {port}: {msg}") from None

    def close(self) -> None:
        self.ser.close()

    def __enter__(self) -> "Uart":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read_until(self, ending: bytes, timeout: float | None = None, reboot: bool = False) -> bytes:
        """Read up to `ending`; with `reboot`, BoardRebooted when the board
        prints its boot line instead (its reply will never come)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        data = b""
        while not data.endswith(ending):
            if reboot and data.endswith(BOOT_BANNER):
                raise BoardRebooted(f"board on {self.port} rebooted while we waited for {ending!r}")
            if time.monotonic() > deadline:
                raise UartError(f"board on {self.port} did not answer (waited for {ending!r}); got {data[-200:]!r}")
            chunk = self.ser.read(1)
            if chunk:
                data += chunk
        return data

    def enter_raw_repl(self, soft_reset: bool = False) -> None:
        # Retried every second until the timeout: a board that is still
        # booting does not take Ctrl-C yet (its tty signals only once its
        # console runs the app). Ctrl-B first leaves a raw REPL that an earlier
        # attempt reached late; Ctrl-A then prints the raw REPL banner again.
        deadline = time.monotonic() + self.timeout
        while True:
            self.ser.write(b"\r\x03\x03\x02")
            time.sleep(0.1)
            self.ser.reset_input_buffer()
            self.ser.write(b"\r\x01")
            try:
                self.read_until(b"raw REPL; CTRL-B to exit\r\n>", max(0.05, min(1.0, deadline - time.monotonic())))
                break
            except UartError:
                if time.monotonic() >= deadline:
                    raise
        if soft_reset:
            self.ser.write(b"\x04")
            self.read_until(b"soft reboot\r\n")
            self.read_until(b"raw REPL; CTRL-B to exit\r\n>")

    def exit_raw_repl(self) -> None:
        self.ser.write(b"\r\x02")

    def exec_raw(self, code: str, timeout: float | None = None) -> tuple[str, str]:
        self.ser.write(code.encode() + b"\x04")
        ok = self.read_until(b"OK", timeout, reboot=True)
        if not ok.endswith(b"OK"):
            raise UartError("board did not accept the code")
        out = self.read_until(b"\x04", timeout, reboot=True)[:-1]
        err = self.read_until(b"\x04", timeout, reboot=True)[:-1]
        self.read_until(b">", timeout, reboot=True)
        return out.decode(errors="replace"), err.decode(errors="replace")

    def exec(self, code: str, timeout: float | None = None) -> str:
        """Run code in the raw REPL and return its output; RemoteError if it raised."""
        self.enter_raw_repl()
        try:
            out, err = self.exec_raw(code, timeout)
        finally:
            self.exit_raw_repl()
        if err:
            raise RemoteError(err)
        return out

    def put_file(self, path: str, data: bytes, chunk: int = 2048) -> None:
        """Write `data` to `path` on the board (hex chunks through the raw REPL,
        into path + '.tmp', then renamed; the sha256 read back must match)."""
        import hashlib

        self.enter_raw_repl()
        try:
            self._check(self.exec_raw(f"import binascii, hashlib, os\nf = open({path + '.tmp'!r}, 'wb')"))
            for i in range(0, len(data), chunk):
                self._check(self.exec_raw(f"f.write(binascii.unhexlify({data[i:i + chunk].hex()!r}))"))
            out = self._check(self.exec_raw(
                f"f.close()\nh = hashlib.sha256()\ng = open({path + '.tmp'!r}, 'rb')\nh.update(g.read())\ng.close()\n"
                f"print(binascii.hexlify(h.digest()).decode())"))
            if out.strip() != hashlib.sha256(data).hexdigest():
                raise UartError(f"{path}: the board read back different bytes")
            self._check(self.exec_raw(f"os.rename({path + '.tmp'!r}, {path!r})"))
        finally:
            self.exit_raw_repl()

    @staticmethod
    def _check(result: tuple[str, str]) -> str:
        out, err = result
        if err:
            raise RemoteError(err)
        return out

    def mkdir(self, path: str) -> None:
        """Create a directory on the board (no error when it exists)."""
        self.exec(f"import os\ntry:\n    os.mkdir({path!r})\nexcept OSError:\n    pass")

    def interrupt(self) -> None:
        """Ctrl-C: stop the running application (drops to the REPL)."""
        self.ser.write(b"\x03")
