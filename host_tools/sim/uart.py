"""Talk to a board's UART: MicroPython's raw REPL through mpremote's
SerialTransport (mpremote is pinned in pyproject.toml). Used by tests,
provisioning and `medsentry sim exec`.

mpremote speaks the protocol (enter the raw REPL, exec and follow the output,
soft reset, the fs_* file operations). The thin layer here adds what it lacks:

- Bounded waits. mpremote opens the port without a read timeout and reads a
  pty byte by byte (`read(1)` then blocks for ever on a silent board) and
  waits up to 10 s per step; here every wait ends at the caller's timeout with
  UartError.
- A board that reboots while we wait (its ROM prints BOOT_BANNER) fails at once
  with BoardRebooted: its answer will never come (mpremote would wait).
- A locked console (it prints "console locked" before the raw-REPL prompt) fails
  at once with ConsoleLocked (mpremote enters and only the first exec fails).
- Entering is retried every second with Ctrl-C, Ctrl-B first: a board that is
  still booting misses the first Ctrl-C, and the sim console does not print its
  raw-REPL banner again on a second Ctrl-A (MicroPython does).
- A port another program holds is named as such (mpremote: "failed to access").
"""
from __future__ import annotations

import errno
import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import serial
from mpremote.transport import TransportError, TransportExecError
from mpremote.transport_serial import SerialTransport


class UartError(RuntimeError):
    """The port cannot be opened or the board does not answer as a REPL."""


class BoardRebooted(UartError):
    """The board printed its ROM boot line while we waited: it reset or lost power."""


class RemoteError(RuntimeError):
    """Code run on the board raised; .traceback holds the board's traceback."""

    def __init__(self, traceback: str):
        super().__init__(traceback.strip().splitlines()[-1] if traceback.strip() else "error on board")
        self.traceback = traceback


class ReadBackMismatch(UartError):
    """The sha256 the board computed of a written file differs from the data sent."""


class ConsoleLocked(UartError, RemoteError):
    """The board's console is locked (provisioned): its raw REPL runs no code."""


# board/sim/rom_main.py BOOT_BANNER: the first line of every power-up.
BOOT_BANNER = b"[ROM] boot: "
# board/sim/console.py LOCKED_MSG, printed before the raw-REPL prompt of a locked board.
LOCKED_MARK = b"console locked"
POLL_S = 0.05  # one read(1) waits at most this long, so deadlines are kept


class _Transport(SerialTransport):
    """mpremote's SerialTransport with bounded waits (our read_until replaces
    its loop: same contract, plus the deadline, reboot and lock checks)."""

    def __init__(self, port: str, wait_s: float) -> None:
        # timeout: mpremote's own fixed-size reads (the "OK" after each code
        # block, the raw-paste answer) wait at most the session's timeout.
        super().__init__(port, baudrate=115200, exclusive=True, timeout=wait_s)
        self.wait_s = wait_s
        self.watch_reboot = False
        self.watch_lock = False

    def read_until(self, min_num_bytes: int, ending: bytes, timeout: float | None = 10,
                   data_consumer: Callable[[bytes], None] | None = None,
                   timeout_overall: float | None = None) -> bytes:
        limit = min(t for t in (self.wait_s, timeout, timeout_overall) if t is not None)
        deadline = time.monotonic() + limit
        data = bytearray()
        saved, self.serial.timeout = self.serial.timeout, POLL_S
        try:
            while not data.endswith(ending):
                if self.watch_lock and LOCKED_MARK in data and data.endswith(b"\n"):
                    break  # a locked console (the agent's login console sends no raw-REPL banner)
                if self.watch_reboot and data.endswith(BOOT_BANNER):
                    raise BoardRebooted(f"board on {self.device_name} rebooted while we waited for {ending!r}")
                if time.monotonic() > deadline:
                    raise UartError(f"board on {self.device_name} did not answer (waited for {ending!r}); "
                                    f"got {bytes(data[-200:])!r}")
                c = self.serial.read(1)
                if c:
                    data += c
                    if data_consumer:
                        data_consumer(c)
                        del data[:-64]  # only the tail is matched
        finally:
            self.serial.timeout = saved
        if self.watch_lock and LOCKED_MARK in data:
            raise ConsoleLocked(bytes(data[data.find(LOCKED_MARK):]).splitlines()[0].decode(errors="replace"))
        return bytes(data)


def _open_error(port: str) -> str:
    """Why mpremote could not open the port (it says only "failed to access")."""
    try:
        serial.Serial(port, 115200, exclusive=True).close()
    except serial.SerialException as e:
        msg = str(e)
        if "lock" in msg.lower() or "busy" in msg.lower() or "Resource temporarily" in msg:
            return f"serial port {port} is in use by another program"
        return f"cannot open serial port {port}: {msg}"
    return f"cannot open serial port {port}"


class Uart:
    def __init__(self, port: str, timeout: float = 10.0):
        self.port = port
        self.timeout = timeout
        try:
            self.transport = _Transport(port, timeout)
        except TransportError:
            raise UartError(_open_error(port)) from None
        self.ser = self.transport.serial

    def close(self) -> None:
        try:
            self.transport.close()
        except OSError:
            self.ser.close()

    def __enter__(self) -> "Uart":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def bounded(self, timeout: float | None = None, reboot: bool = True) -> Iterator[_Transport]:
        """The transport, for mpremote calls whose every wait ends within
        `timeout` (BoardRebooted at once with `reboot`); mpremote's errors
        become ours. Its fs_* calls raise OSError for the board's OSError."""
        t = self.transport
        saved = t.wait_s, t.watch_reboot, self.ser.timeout
        t.wait_s = timeout or self.timeout
        t.watch_reboot = reboot
        self.ser.timeout = t.wait_s
        try:
            yield t
        except TransportExecError as e:
            raise RemoteError(e.error_output) from None
        except TransportError as e:
            raise UartError(f"board on {self.port}: {e}") from None
        except serial.SerialException as e:
            raise UartError(f"serial port {self.port}: {e}") from None
        finally:
            t.wait_s, t.watch_reboot, self.ser.timeout = saved

    def read_until(self, ending: bytes, timeout: float | None = None, reboot: bool = False) -> bytes:
        """Read up to `ending`; with `reboot`, BoardRebooted when the board
        prints its boot line instead (its reply will never come)."""
        with self.bounded(timeout, reboot) as t:
            return t.read_until(1, ending, timeout=None)

    def enter_raw_repl(self, soft_reset: bool = False) -> None:
        """Stop the application and enter the raw REPL (mpremote's sequence),
        retried every second until the timeout; ConsoleLocked on a locked board
        (left at its locked console). With `soft_reset`, then mpremote's soft
        reset: a fresh VM waiting in the raw REPL, the application not started."""
        deadline = time.monotonic() + self.timeout
        with self.bounded(reboot=False) as t:
            t.watch_lock = True
            try:
                while True:
                    # Ctrl-C stops the application; Ctrl-B leaves a raw REPL that
                    # an earlier attempt reached late; then mpremote's Ctrl-C, Ctrl-A.
                    self.ser.write(b"\r\x03\x03\x02")
                    time.sleep(0.1)
                    self.ser.reset_input_buffer()
                    try:
                        t.enter_raw_repl(soft_reset=False,
                                         timeout_overall=max(POLL_S, min(1.0, deadline - time.monotonic())))
                        break
                    except ConsoleLocked:
                        t.exit_raw_repl()
                        raise
                    except UartError:
                        if time.monotonic() >= deadline:
                            raise
            finally:
                t.watch_lock = False
            if soft_reset:
                t.exit_raw_repl()
                t.enter_raw_repl(soft_reset=True, timeout_overall=max(POLL_S, deadline - time.monotonic()))

    def exit_raw_repl(self) -> None:
        self.transport.exit_raw_repl()

    def exec_raw(self, code: str, timeout: float | None = None) -> tuple[str, str]:
        """Run code in the raw REPL (entered already): (stdout, stderr)."""
        with self.bounded(timeout) as t:
            out, err = t.exec_raw(code, timeout=timeout or self.timeout)
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

    def write_file(self, path: str, data: bytes, chunk: int = 2048,
                   progress: Callable[[int, int], None] | None = None) -> None:
        """In the raw REPL: write `data` to path + '.tmp' (mpremote's
        fs_writefile), compare the board's sha256 of it (fs_hashfile), then
        rename it to `path` (atomic on littlefs). A mismatch removes the temp
        file and raises ReadBackMismatch: nothing reaches `path`."""
        tmp = path + ".tmp"
        with self.bounded() as t:
            try:
                t.fs_writefile(tmp, data, chunk_size=chunk, progress_callback=progress)
                if t.fs_hashfile(tmp, "sha256") != hashlib.sha256(data).digest():
                    t.fs_rmfile(tmp)
                    raise ReadBackMismatch(f"{path}: the board read back other bytes than were sent; "
                                           "nothing was renamed into place")
                t.exec(f"import os\nos.rename({tmp!r}, {path!r})")
            except serial.SerialException:
                raise
            except OSError as e:
                raise RemoteError(f"OSError: {e}") from None

    def put_file(self, path: str, data: bytes, chunk: int = 2048) -> None:
        """Write `data` to `path` on the board (see write_file)."""
        self.enter_raw_repl()
        try:
            self.write_file(path, data, chunk)
        finally:
            self.exit_raw_repl()

    def make_dir(self, path: str) -> None:
        """In the raw REPL: create a directory (no error when it exists)."""
        with self.bounded() as t:
            try:
                t.fs_mkdir(path)
            except serial.SerialException:
                raise
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise RemoteError(f"OSError: {e}") from None

    def stat_size(self, path: str) -> int | None:
        """In the raw REPL: the size of `path`, None if it does not exist."""
        with self.bounded() as t:
            try:
                return t.fs_stat(path).st_size
            except serial.SerialException:
                raise
            except OSError as e:
                if e.errno == errno.ENOENT:
                    return None
                raise RemoteError(f"OSError: {e}") from None

    def mkdir(self, path: str) -> None:
        """Create a directory on the board (no error when it exists)."""
        self.enter_raw_repl()
        try:
            self.make_dir(path)
        finally:
            self.exit_raw_repl()

    def interrupt(self) -> None:
        """Ctrl-C: stop the running application (drops to the REPL)."""
        self.ser.write(b"\x03")
