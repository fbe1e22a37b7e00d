"""One raw-REPL session on a board's UART (mpremote's transport, via
host_tools.sim.uart.Uart), for writing files into its flash safely.

Each file is written to ``<path>.tmp`` (mpremote's fs_writefile), its SHA-256
computed on the board (fs_hashfile) and compared, and only then is it renamed
over ``<path>`` (littlefs rename is atomic), so a cut cable or a reset
mid-transfer never leaves a half-written file under the final name.
Every snippet and every written chunk feeds the board's watchdog (``board`` in
the ROM console's globals) so a long session does not get the board reset under us.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from host_tools.sim.uart import BoardRebooted, ConsoleLocked, ReadBackMismatch, RemoteError, Uart, UartError

from .errors import BoardLocked, ProvisionError, TransferError

CHUNK = 4096  # data bytes per exec (at most 16 KiB of bytes literal, below the console's 64 KiB cap)

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
        try:
            self.uart.enter_raw_repl()
        except ConsoleLocked as exc:
            # Leave the board running its application again (soft reset from
            # its locked console), not parked at the console.
            self.uart.ser.write(b"\x04")
            self.uart.ser.flush()
            raise BoardLocked(
                f"the board on {self.port} is locked (its console refuses the raw REPL: {exc}); "
                "it was provisioned already - factory provisioning runs once per board") from None
        except UartError as exc:
            raise ProvisionError(f"the board on {self.port} did not enter the raw REPL within {self.timeout:.0f} s "
                                 f"({exc}): a provisioned board keeps its console locked while its "
                                 "agent runs (provisioned already?); otherwise check that it is a medsentry board "
                                 "and powered") from None
        self.entered = True
        self._exec(_PRELUDE)

    @contextmanager
    def _board(self) -> Iterator[None]:
        """Uart errors as provisioning errors that say what to do."""
        try:
            yield
        except BoardRebooted:
            self.entered = False
            raise ProvisionError(
                f"the board on {self.port} rebooted during provisioning (power cut or reset); nothing is "
                "committed before its lock fuse is programmed, and its ROM removes an uncommitted identity: "
                "run provisioning again - it says which state the board is in and starts over") from None
        except UartError as exc:
            raise ProvisionError(f"UART: {exc}") from None
        except RemoteError as exc:
            raise ProvisionError(f"the board raised: {exc}\n{exc.traceback.strip()}") from None
        except OSError as exc:  # an mpremote fs_* call: the board's OSError
            raise ProvisionError(f"the board raised OSError: {exc}") from None

    def run(self, code: str, timeout: float | None = None) -> str:
        """Run code (after feeding the watchdog); return its output; ProvisionError
        with the board's traceback if it raised."""
        return self._exec("_wd()\n" + code, timeout)

    def _exec(self, code: str, timeout: float | None = None) -> str:
        with self._board():
            out, err = self.uart.exec_raw(code, timeout or self.timeout)
            if err:
                raise RemoteError(err)
        return out

    def run_json(self, code: str) -> object:
        out = self.run(code)
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise ProvisionError(f"unexpected answer from the board: {out!r}") from None

    def mkdir(self, path: str) -> None:
        with self._board():
            self.uart.make_dir(path)

    def exists(self, path: str) -> bool:
        with self._board():
            return self.uart.stat_size(path) is not None

    def read_file(self, path: str, limit: int = 64 * 1024) -> bytes | None:
        """A (small) file's bytes, or None if it does not exist."""
        with self._board():
            size = self.uart.stat_size(path)
            if size is None:
                return None
            if size > limit:
                raise ProvisionError(f"{path} on the board is larger than {limit} bytes")
            with self.uart.bounded() as t:
                return bytes(t.fs_readfile(path, chunk_size=CHUNK))

    def put_file(self, path: str, data: bytes) -> None:
        """Write data to path: temp file, sha256 verified on the board, rename
        (Uart.write_file); the watchdog is fed after every chunk (and was by
        the snippet before)."""
        with self._board():
            try:
                self.uart.write_file(path, data, CHUNK, progress=lambda done, size: self.run(""))
            except ReadBackMismatch as exc:
                raise TransferError(f"{exc} - run provisioning again") from None

    def reset(self) -> None:
        """Reset the board (it reboots into its application); the session ends."""
        with self._board(), self.uart.bounded(reboot=False) as t:
            t.exec_raw_no_follow("_wd()\nboard.reset('provisioned')")
        self.entered = False
