"""Input the release tooling must refuse: files read only if they are regular
files under a size cap (checked before reading; a FIFO, ``/dev/zero`` or a
directory is an error, never a hang), sources never outside their tree, and
outputs only into directories that exist and can be written."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import ReleaseError


class InputError(ReleaseError):
    """A path given to the release tooling cannot be used (message says why)."""


def _why(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))


def read_regular(path: Path, cap: int, what: str = "file") -> bytes:
    """The bytes of the regular file `path`, refused before reading when it is
    anything else or larger than `cap` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {_why(exc)}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{what} {path} is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{what} {path} is not a regular file (a device, FIFO or socket)")
        if st.st_size > cap:
            raise InputError(f"{what} {path} is {st.st_size} bytes; the limit is {cap}")
        try:
            data = fh.read(cap + 1)
        except OSError as exc:
            raise InputError(f"cannot read {what} {path}: {_why(exc)}") from None
    if len(data) > cap:
        raise InputError(f"{what} {path} grew past {cap} bytes while being read")
    return data


def inside_tree(path: Path, base: Path) -> Path:
    """`path` resolved (links followed); refused when it leaves `base`."""
    real = path.resolve()
    try:
        real.relative_to(base.resolve())
    except ValueError:
        raise InputError(f"{path} leads outside the source tree {base} (to {real}): refused") from None
    return real


def check_output(path: Path) -> None:
    """An output file may only go into an existing, writable directory."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write {path}: directory {parent} does not exist (create it first)")
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {path}: directory {parent} is not writable")


def write_error(path: Path, exc: OSError) -> InputError:
    return InputError(f"cannot write {path}: {_why(exc)}")


def check_source(path: Path, base: Path, cap: int) -> bool:
    """A source entry of a package build: refused when it (or a link in it)
    leads outside `base`, is not a regular file, or is over `cap` bytes;
    False for a directory (a link to a directory inside the tree is skipped)."""
    real = inside_tree(path, base)
    try:
        st = real.stat()
    except OSError as exc:
        raise InputError(f"source {path}: {_why(exc)}") from None
    if stat.S_ISDIR(st.st_mode):
        return False
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"source {path} is not a regular file (a device, FIFO or socket): refused")
    if st.st_size > cap:
        raise InputError(f"source {path} is {st.st_size} bytes; a package file may have at most {cap}")
    return True
