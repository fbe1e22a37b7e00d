"""Read the micropython-lib style ``manifest.py`` of a device package.

``agent/``, ``updater/`` and ``board/`` each declare what they are and which
files ship, with the manifest functions of micropython-lib
(``tools/manifestfile.py``), of which this is the subset the project uses::

    metadata(version="1.0.0", description="...")
    require("board")                        # another device package
    package("agent", base_path="..")         # every .py of the package
    package("updater", files=("__init__.py", "loader.py"), base_path="..")
    module("extra.py")                       # one module file
    entry("agent.main")                      # medsentry: the module the loader starts

Paths are relative to the manifest's directory joined with ``base_path``, as
in micropython-lib. Builds (``package build``, the simulated board's
firmware) ship exactly the files the manifests list: host-only modules and
README files in the source tree stay out of the slots.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import BuildError

MANIFEST = "manifest.py"


@dataclass
class DeviceManifest:
    """What one manifest.py declares."""

    path: Path
    version: str = ""
    description: str = ""
    requires: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # absolute, sorted, no duplicates
    entry: str | None = None  # the application's entry module, if this package has it


class _Reader:
    """The functions a manifest.py calls, recording into a DeviceManifest."""

    def __init__(self, manifest: DeviceManifest) -> None:
        self.m = manifest
        self.dir = manifest.path.parent

    def _add(self, p: Path) -> None:
        p = p.resolve()
        if not p.is_file():
            raise BuildError(f"{self.m.path}: lists {p}, which does not exist")
        if p not in self.m.files:
            self.m.files.append(p)

    def metadata(self, description: str = "", version: str = "", license: str = "", author: str = "") -> None:
        self.m.description, self.m.version = description, version

    def require(self, name: str, **_kw: object) -> None:
        self.m.requires.append(name)

    def package(self, package_path: str, files: tuple[str, ...] | None = None,
                base_path: str = ".", opt: int | None = None) -> None:
        root = (self.dir / base_path / package_path).resolve()
        if not root.is_dir():
            raise BuildError(f"{self.m.path}: package {package_path} not found at {root}")
        if files is None:
            found = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts and p != self.m.path)
        else:
            found = [root / f for f in files]
        for p in found:
            self._add(p)

    def entry(self, name: str) -> None:
        self.m.entry = name

    def module(self, module_path: str, base_path: str = ".", opt: int | None = None) -> None:
        self._add(self.dir / base_path / module_path)


def load_manifest(path: Path) -> DeviceManifest:
    """Run one manifest.py (a trusted file of the source tree, as the code it
    compiles) with the micropython-lib manifest functions."""
    path = Path(path).resolve()
    m = DeviceManifest(path)
    r = _Reader(m)
    scope = {name: getattr(r, name) for name in ("metadata", "require", "package", "module", "entry")}
    try:
        code = compile(path.read_text(), str(path), "exec")
        exec(code, scope)  # noqa: S102 - the manifest format is Python
    except (OSError, SyntaxError, TypeError, NameError) as exc:
        raise BuildError(f"cannot read {path}: {exc}") from None
    if not m.version:
        raise BuildError(f"{path}: metadata(version=...) is missing")
    m.files.sort()
    return m


def manifest_of(directory: Path) -> DeviceManifest | None:
    """The manifest of a source directory, or None when it has none."""
    p = Path(directory) / MANIFEST
    return load_manifest(p) if p.is_file() else None


def package_files(root: Path, packages: tuple[str, ...]) -> list[Path]:
    """Every file the manifests of `packages` (directories under `root`) list."""
    out: list[Path] = []
    for pkg in packages:
        m = manifest_of(Path(root) / pkg)
        if m is None:
            raise BuildError(f"{Path(root) / pkg} has no {MANIFEST}")
        out.extend(m.files)
    return sorted(set(out))


def declare(directory: Path, files: list[str]) -> None:
    """Append ``module(...)`` lines to the manifest.py of `directory` for the
    `files` (paths relative to it) it does not list yet: how a release tree
    adds a file (a data file, a new module) to what ships."""
    m = manifest_of(directory)
    if m is None:
        return
    listed = set(m.files)
    lines = [f"module({rel!r})\n" for rel in sorted(files) if (Path(directory) / rel).resolve() not in listed]
    if lines:
        with open(m.path, "a") as f:
            f.writelines(lines)


def declared_entry(sources: list[Path]) -> str | None:
    """The entry module the manifests among `sources` declare (at most one)."""
    found = {m.entry for s in sources if Path(s).is_dir() and (m := manifest_of(s)) is not None and m.entry}
    if len(found) > 1:
        raise BuildError(f"the sources declare more than one entry: {', '.join(sorted(found))}")
    return found.pop() if found else None
