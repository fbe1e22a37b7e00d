"""Small file-system helpers: atomic writes, exclusive lock, tree digests.

Every file the release tooling lands (``write_atomic``, ``move``, ``remove``)
passes :func:`landing`, which counts landings per process. Test hook: with
``MEDSENTRY_TEST_KILL_AT_LANDING=N[:before|mid|after][:KILL|INT]`` set, the
process sends itself SIGKILL (default) or SIGINT at landing N (``mid``: the
temp file is written and fsynced but not yet renamed; default stage). The crash
tests use it to stop a real process at every file of a repository change;
nothing else sets it.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import RepositoryLocked


@dataclass
class Write:
    """One file a change will land: absolute path, content, mode."""

    path: Path
    data: bytes
    mode: int = 0o644

    def landed(self) -> bool:
        """True if the file already holds exactly these bytes."""
        try:
            return self.path.read_bytes() == self.data
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return False


KILL_AT_LANDING_ENV = "MEDSENTRY_TEST_KILL_AT_LANDING"
TMP_MARK = ".tmp"
_landings = [0]


def reset_landing_count() -> None:
    """Start counting landings from 0 again (a forked test child calls it)."""
    _landings[0] = 0


def landing(stage: str) -> None:
    """Mark a landing stage; ``before`` starts a new landing. Test hook only
    (see the module docstring); a no-op unless the variable is set."""
    if stage == "before":
        _landings[0] += 1
    spec = os.environ.get(KILL_AT_LANDING_ENV)
    if not spec:
        return
    parts = spec.split(":")
    at = int(parts[0])
    when = parts[1] if len(parts) > 1 and parts[1] else "mid"
    sig = signal.SIGINT if len(parts) > 2 and parts[2] == "INT" else signal.SIGKILL
    if _landings[0] == at and when == stage:
        os.kill(os.getpid(), sig)


def tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` through a temp file, fsync, then rename over it."""
    landing("before")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        landing("mid")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
    landing("after")


def move(src: Path, dst: Path) -> None:
    """Rename `src` to `dst` (same file system), durably."""
    landing("before")
    dst.parent.mkdir(parents=True, exist_ok=True)
    landing("mid")
    os.replace(src, dst)
    fsync_dir(dst.parent)
    fsync_dir(src.parent)
    landing("after")


def remove(path: Path) -> None:
    """Delete `path` (gone already is fine), durably."""
    landing("before")
    landing("mid")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fsync_dir(path.parent)
    landing("after")


def remove_stale_temps(*dirs: Path, recursive: bool = True) -> list[Path]:
    """Delete temp files that writers which no longer run left
    (``.<name>.tmp<pid>``, pid gone) in `dirs` (and below when `recursive`)."""
    gone = []
    for d in dirs:
        if not d.is_dir():
            continue
        found = d.rglob(f".*{TMP_MARK}*") if recursive else d.glob(f".*{TMP_MARK}*")
        for p in found:
            pid = p.name[p.name.rfind(TMP_MARK) + len(TMP_MARK):]
            if p.is_file() and pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                gone.append(p)
    return gone


def _alive(pid: int) -> bool:
    """Is process `pid` running? (Linux /proc; without it, assume it is.)"""
    return Path("/proc", str(pid)).exists() or not Path("/proc/self").exists()


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it is durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, timeout: float = 60.0) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path` (waits up to `timeout` seconds).

    Every repository-changing operation runs under this lock, so a cron job
    refreshing the timestamp and a release manager publishing never interleave.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise RepositoryLocked(
                        f"the repository is locked by another medsentry process ({lock_path}); "
                        f"gave up after {timeout:.0f} s"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(65536), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(root: Path) -> str:
    """Digest of every file's relative path and content under `root` (for tests
    and for proving an operation left the repository untouched)."""
    h = hashlib.sha256()
    if not root.exists():
        return h.hexdigest()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0")
            h.update(sha256_file(p).encode() + b"\n")
    return h.hexdigest()
