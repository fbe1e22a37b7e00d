"""A mip package index of the device packages, in micropython-lib's layout.

For development boards only: ``mpremote mip install --index URL medsentry-agent``
copies the files onto an open board. Nothing in it is signed; production
devices take signed TUF packages only (README "Device update path").

The packages come from the device manifests (``agent/``, ``updater/``,
``board/`` ``manifest.py``, read by :mod:`host_tools.release.manifests`):
``metadata(version=...)`` is the version, ``require(...)`` the dependencies.
Layout written under ``out`` (what micropython-lib's ``tools/build.py``
publishes, and what ``mip``/``mpremote mip`` read)::

    index.json                                   {"v": 2, "packages": [...]}
    package/<mpy>/<name>/<version>.json, latest.json   .mpy files (mpy-cross)
    package/py/<name>/<version>.json, latest.json      the .py sources
    file/<hh>/<hash>                             file contents by short sha256

A package file is ``{"hashes": [[path, short_hash], ...], "deps": [[name,
version], ...], "version": v}``; ``path`` is relative to the board's lib
directory (``agent/main.mpy``); ``short_hash`` is the first 8 hex digits of
the file's SHA-256 (mip checks a file already on the board with it).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .build import compile_sources
from .errors import BuildError
from .fsutil import write_atomic
from .manifests import DeviceManifest, manifest_of

PACKAGES = ("agent", "updater", "board")  # source directories with a manifest.py
PREFIX = "medsentry-"
HASH_LEN = 8  # as micropython-lib's index


@dataclass
class MipPackage:
    name: str
    version: str
    description: str
    deps: list[str]
    files: dict[str, dict[str, str]]  # flavour ("py" or the mpy version) -> {path: short_hash}


def package_name(source_dir: str) -> str:
    return PREFIX + source_dir


class _Files:
    """The file/ store: contents by short hash, refusing a short-hash collision."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.seen: dict[str, str] = {}

    def add(self, data: bytes) -> str:
        full = hashlib.sha256(data).hexdigest()
        short = full[:HASH_LEN]
        if self.seen.setdefault(short, full) != full:
            raise BuildError(f"two files share the short hash {short}: lengthen HASH_LEN")
        path = self.out / "file" / short[:2] / short
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            write_atomic(path, data)
        return short


def _package(root: Path, m: DeviceManifest, name: str, files: _Files) -> MipPackage:
    sources = [(str(src.relative_to(root)).replace("\\", "/"), src) for src in m.files]
    if not sources:
        raise BuildError(f"{m.path} lists no files")
    py = {rel: files.add(src.read_bytes()) for rel, src in sources}
    compiled = compile_sources(sources, keep_py=())  # mpy-cross, as `package build`
    mpy_versions = {str(code[1]) for rel, code in compiled.items() if rel.endswith(".mpy")}  # b"M", version
    if len(mpy_versions) != 1:
        raise BuildError(f"{m.path}: mpy-cross gave bytecode versions {sorted(mpy_versions)}")
    return MipPackage(name, m.version, m.description, [package_name(r) for r in m.requires],
                      {"py": py, mpy_versions.pop(): {rel: files.add(code) for rel, code in compiled.items()}})


def build_index(root: Path, out: Path, sources: tuple[str, ...] = PACKAGES) -> list[MipPackage]:
    """Write the index of `sources` (directories of `root` with a manifest.py) into `out`."""
    root = Path(root).resolve()
    out = Path(out)
    files = _Files(out)
    pkgs: list[MipPackage] = []
    for source in sources:
        m = manifest_of(root / source)
        if m is None:
            raise BuildError(f"{root / source} has no manifest.py")
        pkgs.append(_package(root, m, package_name(source), files))
    names = {p.name for p in pkgs}
    for p in pkgs:
        missing = [d for d in p.deps if d not in names]
        if missing:
            raise BuildError(f"{p.name} requires {', '.join(missing)}, which is not in the index")
        for flavour, hashes in p.files.items():
            doc = {"hashes": sorted([path, h] for path, h in hashes.items()),
                   "deps": [[d, "latest"] for d in p.deps], "version": p.version}
            text = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
            d = out / "package" / flavour / p.name
            d.mkdir(parents=True, exist_ok=True)
            for fname in (p.version + ".json", "latest.json"):
                write_atomic(d / fname, text)
    index = {"v": 2, "packages": [{"name": p.name, "version": p.version, "description": p.description,
                                   "deps": p.deps, "flavours": sorted(p.files)} for p in pkgs]}
    write_atomic(out / "index.json", (json.dumps(index, indent=1, sort_keys=True) + "\n").encode())
    return pkgs
