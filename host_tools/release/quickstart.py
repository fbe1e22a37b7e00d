"""One call for demos and harnesses: make sure a work directory has keys, a
repository and roles for the given models, then build the device code and
publish it as the next release of each model (real mpy-cross build, real
signatures, same code paths as the CLI).

    from host_tools.release.quickstart import DemoPassphrases, publish_demo_release
    summary = publish_demo_release(".medsentry", DemoPassphrases("demo-secret"))

`DemoPassphrases` derives one distinct passphrase per key from a demo secret:
for demos and tests only (real deployments use MEDSENTRY_KEY_PASSPHRASE_* or
prompts).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from .build import build_package
from .errors import NotInitialized
from .initialize import init_workdir
from .keys import PassphraseSource
from .layout import Layout
from .manifests import declare
from .publish import Release, last_published, publish_package
from .roles.models import add_model
from .session import open_session
from .versions import parse_version

REPO_ROOT = Path(__file__).resolve().parents[2]
# What goes into an application slot: the agent and the updater. The `board`
# package is firmware (the HAL), never part of a slot.
DEVICE_SOURCES = ("agent", "updater")


class DemoPassphrases:
    """Deterministic, distinct passphrase per key name (demo use only)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def existing(self, keyname: str) -> str:
        return hashlib.sha256(f"{self.secret}:{keyname}".encode()).hexdigest()[:24]

    def new(self, keyname: str, rotation: bool = False) -> str:
        return self.existing(keyname)


@dataclass
class DemoSummary:
    root_path: Path
    repository: Path
    releases: list[Release] = field(default_factory=list)


def publish_demo_release(
    workdir: str | Path,
    passphrases: PassphraseSource,
    models: tuple[str, ...] = ("pump-v2", "monitor-v1"),
    sources: tuple[str, ...] = DEVICE_SOURCES,
    base_dir: Path = REPO_ROOT,
    channel: str = "stable",
) -> DemoSummary:
    layout = Layout.of(workdir)
    summary = DemoSummary(ensure_models(workdir, passphrases, models), layout.repository)
    for model in models:
        with open_session(workdir, passphrases, lock=False) as s:
            top_v, top_c = last_published(s, model)
        if top_v is None:
            version, counter = "1.0.0", 1
        else:
            major, minor, patch = parse_version(top_v.version)
            version, counter = f"{major}.{minor}.{patch + 1}", top_c.security_counter + 1
        pkg = build_package(
            model=model,
            version=version,
            sources=[base_dir / s for s in sources],
            base_dir=base_dir,
            security_counter=counter,
            out_dir=layout.packages,
            keep_py=(),
        )
        with open_session(workdir, passphrases) as s:
            summary.releases.append(publish_package(s, pkg.path, channel))
    return summary


def ensure_models(workdir: str | Path, passphrases: PassphraseSource, models: tuple[str, ...]) -> Path:
    """Initialise the release work dir if needed and add the model roles.
    Returns the path of the repository's first root (devices' trust anchor)."""
    layout = Layout.of(workdir)
    try:
        with open_session(workdir, passphrases, lock=False):
            pass
    except NotInitialized:
        init_workdir(workdir, passphrases)
    for model in models:
        with open_session(workdir, passphrases) as s:
            if model not in s.repo.models():
                add_model(s, model)
    return layout.metadata / "1.root.json"


def device_tree(dst: Path, overrides: dict[str, bytes] | None = None, base_dir: Path = REPO_ROOT) -> Path:
    """Copy the slot sources (agent/, updater/) to `dst` and apply `overrides`
    (relative path -> new content): the source tree of a release. Files the
    overrides add are declared in their package's manifest.py."""
    import shutil

    dst = Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    for pkg in DEVICE_SOURCES:
        shutil.copytree(base_dir / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    added: dict[str, list[str]] = {}
    for rel, data in (overrides or {}).items():
        p = dst / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        pkg, _, inner = rel.partition("/")
        added.setdefault(pkg, []).append(inner)
    for pkg, files in added.items():
        declare(dst / pkg, files)  # what a release adds ships: its manifest lists it
    return dst


def publish_tree(
    workdir: str | Path,
    passphrases: PassphraseSource,
    model: str,
    version: str,
    security_counter: int,
    tree: Path,
    channel: str = "stable",
    min_base_version: str = "0.0.0",
    urgent: bool = False,
    base_package: Path | None = None,
    held: bool = False,
) -> Release:
    """Build the slot sources in `tree` as a package and publish it (``held``:
    offered to no device until a staged rollout opens it)."""
    layout = Layout.of(workdir)
    pkg = build_package(
        model=model,
        version=version,
        sources=[Path(tree) / s for s in DEVICE_SOURCES],
        base_dir=Path(tree),
        security_counter=security_counter,
        out_dir=layout.packages,
        keep_py=(),
        min_base_version=min_base_version,
        base_package=base_package,
        source_date_epoch=0,
    )
    with open_session(workdir, passphrases) as s:
        return publish_package(s, pkg.path, channel, urgent, held)
