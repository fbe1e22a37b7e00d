"""One raw-REPL session on a board's UART (pyserial, via host_tools.sim.uart.Uart),
for writing files into its flash safely.

Binary data crosses the REPL as hex in chunks; each file is written to
``<path>.tmp``, its SHA-256 is computed on the board and compared, and only then
is it renamed over ``<path>`` (littlefs rename is atomic), so a cut cable or a
reset mid-transfer never leaves a half-written file under the final name.
Every snippet feeds the board's watchdog (``board`` in the ROM console's globals)
so a long session does not get the board reset under us.
"""
from __future__ import annotations

import hashlib
import json
import time

from host_tools.sim.uart import BoardRebooted, RemoteError, Uart, UartError

from .errors import BoardLocked, ProvisionError, TransferError

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
LOCKED_MARK = b"console locked"
CHUNK = 4096  # data bytes per exec (8 KiB of hex, well below the console's 64 KiB cap)

_PRELUDE = """import binascii, hashlib, os, json
def _wd():
    try:
        board.watchdog_feed()
    except (NameError, AttributeError, OSError):
        pass
_wd()
"""


class ReplSession:
    """Enter the raw REPL once, run snippets, leave. Use as a context manager."""

    def __init__(self, port: str, timeout: float = 10.0) -> None:
        self.port = port
        try:
            self.uart = Uart(port, timeout=timeout)
        except UartError as exc:
            raise ProvisionError(str(exc)) from None
        self.timeout = timeout
        self.entered = False

    def __enter__(self) -> "ReplSession":
        try:
            self.enter()
        except BaseException:
            self.uart.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.entered:
                self.uart.exit_raw_repl()
        finally:
            self.uart.close()

    def enter(self) -> None:
        """Interrupt the application (Ctrl-C) and enter the raw REPL (Ctrl-A).
        A locked console says "console locked" before its prompt: BoardLocked."""
        ser = self.uart.ser
        deadline = time.monotonic() + self.timeout
        data = b""
        while time.monotonic() < deadline:
            # Retried every second: a board that is (re)booting misses the
            # first Ctrl-C, and its application does not read the UART.
            # Ctrl-C stops the application; Ctrl-B leaves a raw REPL an
            # earlier attempt may have reached late; Ctrl-A enters it.
            ser.write(b"\r\x03\x03\x02")
            time.sleep(0.1)
            ser.reset_input_buffer()
            ser.write(b"\r\x01")
            data = b""
            attempt_end = min(deadline, time.monotonic() + 1.0)
            while time.monotonic() < attempt_end:
                chunk = ser.read(256)
                if chunk:
                    data += chunk
                if LOCKED_MARK in data and (data.endswith(RAW_BANNER) or b"login: " in data):
                    # A locked ROM console answers with its banner, the
                    # agent's login console (agent/console) with its prompt.
                    # Leave the board running its application again (back to
                    # the friendly REPL, soft reset), not parked in the REPL.
                    ser.write(b"\r\x02\x04")
                    ser.flush()
                    line = data[data.find(LOCKED_MARK):].splitlines()[0].decode(errors="replace")
                    raise BoardLocked(
                        f"the board on {self.port} is locked (its console refuses the raw REPL: {line}); "
                        "it was provisioned already - factory provisioning runs once per board")
                if data.endswith(RAW_BANNER):
                    self.entered = True
                    self._exec(_PRELUDE)
                    return
        raise ProvisionError(f"the board on {self.port} did not enter the raw REPL within {self.timeout:.0f} s "
                             f"(got {data[-120:]!r}): a provisioned board keeps its console locked while its "
                             "agent runs (provisioned already?); otherwise check that it is a medsentry board "
                             "and powered")

    def run(self, code: str, timeout: float | None = None) -> str:
        """Run code (after feeding the watchdog); return its output; ProvisionError
        with the board's traceback if it raised."""
        return self._exec("_wd()\n" + code, timeout)

    def _exec(self, code: str, timeout: float | None = None) -> str:
        try:
            out, err = self.uart.exec_raw(code, timeout or self.timeout)
        except BoardRebooted:
            self.entered = False
            raise ProvisionError(
                f"the board on {self.port} rebooted during provisioning (power cut or reset); nothing is "
                "committed before its lock fuse is programmed, and its ROM removes an uncommitted identity: "
                "run provisioning again - it says which state the board is in and starts over") from None
        except UartError as exc:
            raise ProvisionError(f"UART: {exc}") from None
        if err:
            raise ProvisionError(f"the board raised: {RemoteError(err)}\n{err.strip()}")
        return out

    def run_json(self, code: str) -> object:
        out = self.run(code)
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise ProvisionError(f"unexpected answer from the board: {out!r}") from None

    def mkdir(self, path: str) -> None:
        self.run(f"try:\n    os.mkdir({path!r})\nexcept OSError:\n    pass\n")

    def exists(self, path: str) -> bool:
        return bool(self.run_json(
            f"try:\n    os.stat({path!r})\n    print('true')\nexcept OSError:\n    print('false')\n"))

    def read_file(self, path: str, limit: int = 64 * 1024) -> bytes | None:
        """A (small) file's bytes, or None if it does not exist."""
        out = self.run(
            f"try:\n    f = open({path!r}, 'rb')\nexcept OSError:\n    f = None\n"
            f"if f is None:\n    print('-')\nelse:\n"
            f"    d = f.read({limit + 1})\n    f.close()\n    print(binascii.hexlify(d).decode())\n")
        text = out.strip()
        if text == "-":
            return None
        data = bytes.fromhex(text)
        if len(data) > limit:
            raise ProvisionError(f"{path} on the board is larger than {limit} bytes")
        return data

    def put_file(self, path: str, data: bytes) -> None:
        """Write data to path: temp file, sha256 verified on the board, rename."""
        tmp = path + ".tmp"
        self.run(f"_f = open({tmp!r}, 'wb')\n")
        try:
            for i in range(0, len(data), CHUNK):
                self.run(f"_f.write(binascii.unhexlify({data[i:i + CHUNK].hex()!r}))\n")
        finally:
            if self.entered:  # not after the board rebooted under us
                self.run("_f.close()\n")
        got = self.run(
            f"_h = hashlib.sha256()\n_g = open({tmp!r}, 'rb')\n"
            "while True:\n    _b = _g.read(1024)\n    if not _b:\n        break\n    _h.update(_b)\n"
            "_g.close()\nprint(binascii.hexlify(_h.digest()).decode())\n").strip()
        want = hashlib.sha256(data).hexdigest()
        if got != want:
            self.run(f"os.remove({tmp!r})\n")
            raise TransferError(f"{path}: the board read back sha256 {got[:16]}..., sent {want[:16]}...; "
                                "nothing was renamed into place - run provisioning again")
        self.run(f"os.rename({tmp!r}, {path!r})\n")

    def reset(self) -> None:
        """Reset the board (it reboots into its application); the session ends."""
        ser = self.uart.ser
        ser.write(b"_wd()\nboard.reset('provisioned')\n\x04")
        ser.flush()
        time.sleep(0.2)
        self.entered = False
