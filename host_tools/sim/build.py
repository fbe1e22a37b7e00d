"""Compile device code to .mpy trees with mpy-cross.

Three trees, as on a real board:
- firmware: the `board` package (on hardware it is frozen into the firmware);
- loader:   updater/loader.py and updater/bootstate.py as loader.mpy and
            bootstate.mpy, for the flash loader partition;
- app:      the `agent` and `updater` packages, for an application slot. It is
            the content of a real release package (host_tools.release) built
            for the board's model as the factory firmware, unpacked, plus the
            slot's manifest.json and slot.json exactly as the installer writes them.
File lists come from the packages' manifest.py (host_tools.release.manifests).
Builds are cached under <workdir>/build/<hash of the sources>.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from host_tools.mpvm import REPO_ROOT
from host_tools.release.build import mpy_cross_path
from host_tools.release.manifests import MANIFEST, package_files

APP_PACKAGES = ("agent", "updater")
FIRMWARE_PACKAGES = ("board",)
LOADER_SOURCES = ("updater/loader.py", "updater/bootstate.py")  # top-level modules there


class BuildError(RuntimeError):
    """mpy-cross refused a source file (a missing mpy-cross is the release BuildError)."""


FACTORY_VERSION = "1.0.0"
FACTORY_COUNTER = 1
DEFAULT_MODEL = "pump-v2"


@dataclass(frozen=True)
class Build:
    firmware: Path
    loader: Path
    app: Path  # app tree of DEFAULT_MODEL; app_for(model) for others
    digest: str

    def app_for(self, model: str) -> Path:
        return factory_app(self, model)


def source_digest(root: Path = REPO_ROOT) -> str:
    h = hashlib.sha256()
    packages = FIRMWARE_PACKAGES + APP_PACKAGES
    for p in package_files(root, packages) + [root / pkg / MANIFEST for pkg in packages]:
        h.update(str(p.resolve().relative_to(root.resolve())).encode() + b"\0" + p.read_bytes() + b"\0")
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
    for src in package_files(root, packages):
        rel = str(src.relative_to(root.resolve()))
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
    for src in LOADER_SOURCES:
        compile_file(root / src, result.loader / Path(src).with_suffix(".mpy").name, src)
    # Entry scripts stay source: they are what the "reset vector" runs.
    for script in ("rom.py", "factory.py"):
        shutil.copy(Path(__file__).parent / "scripts" / script, result.firmware / script)
    _factory_app_into(result.app, base, DEFAULT_MODEL, root)
    done.write_text(digest)
    return result


def factory_package(build_: Build, model: str, root: Path = REPO_ROOT) -> Path:
    """The factory firmware release package for `model` (built once per sources)."""
    from host_tools.release.build import build_package

    base = build_.firmware.parent
    path = base / f"factory-{model}.mspk"
    if not path.exists():
        build_package(
            model=model,
            version=FACTORY_VERSION,
            sources=[root / pkg for pkg in APP_PACKAGES],
            base_dir=root,
            security_counter=FACTORY_COUNTER,
            out_dir=base,
            output=path,
            keep_py=(),
            source_date_epoch=0,
        )
        sbom = path.with_name(path.name.removesuffix(".mspk") + ".cdx.json")
        sbom.unlink(missing_ok=True)
    return path


def _factory_app_into(app: Path, base: Path, model: str, root: Path) -> None:
    import json

    from host_tools.release.package import read_package

    pkg_path = factory_package(Build(base / "firmware", base / "loader", app, ""), model, root)
    info = read_package(pkg_path)
    tmp = app.with_name(app.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    for entry in info.manifest["files"]:
        dst = tmp / entry["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(info.file(entry["path"]))
    (tmp / "manifest.json").write_bytes(info.manifest_bytes)
    slot = {
        "version": info.version,
        "security_counter": info.security_counter,
        "model": model,
        "manifest_sha256": info.manifest_sha256,
        "target": f"{model}/{pkg_path.name}",
    }
    if info.manifest.get("entry"):
        slot["entry"] = info.manifest["entry"]  # as the installer writes it
    (tmp / "slot.json").write_text(json.dumps(slot))
    if app.exists():
        shutil.rmtree(app)
    tmp.rename(app)


def factory_app(build_: Build, model: str) -> Path:
    """App tree (factory firmware) for a board of `model`."""
    if model == DEFAULT_MODEL:
        return build_.app
    app = build_.firmware.parent / f"app-{model}"
    if not (app / "slot.json").exists():
        _factory_app_into(app, build_.firmware.parent, model, REPO_ROOT)
    return app
