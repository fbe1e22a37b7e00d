"""``release publish`` and ``release list``.

A release is a package target of its model's delegated role:
``<model>/<model>-<version>.mspk`` with custom fields
``{"type": "package", "model", "compatible_models", "version",
"security_counter", "channel", "package_kind", "base_version",
"min_base_version", "manifest_sha256", "manifest_length"}``, plus its SBOM as
``<model>/<model>-<version>.cdx.json`` (``{"type": "sbom", ...}``). Recalled
versions are listed in the model's signed ``<model>/recalls.json`` target
(see :mod:`.recall`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from tuf.api.metadata import TargetFile

from .errors import (
    ConfigError,
    CounterNotIncreasing,
    RepositoryError,
    UnknownRelease,
    VersionNotIncreasing,
)
from .package import PackageInfo, read_package
from .roles.models import require_model
from .session import Session
from .versions import parse_version

CHANNELS = ("stable", "canary")


def package_target_path(model: str, version: str) -> str:
    return f"{model}/{model}-{version}.mspk"


def sbom_target_path(model: str, version: str) -> str:
    return f"{model}/{model}-{version}.cdx.json"


def recalls_target_path(model: str) -> str:
    return f"{model}/recalls.json"


@dataclass
class Release:
    model: str
    version: str
    security_counter: int
    channel: str
    package_kind: str
    target: str
    length: int
    sha256: str
    status: str = "published"
    reason: str | None = None
    recalled_at: str | None = None
    extra: dict = field(default_factory=dict)


def read_target(session: Session, tf: TargetFile) -> bytes:
    """Content of a target stored in the repository, checked against its hashes."""
    dirname, sep, base = tf.path.rpartition("/")
    path = session.layout.targets / f"{dirname}{sep}{tf.hashes['sha256']}.{base}"
    try:
        data = path.read_bytes()
        tf.verify_length_and_hashes(data)
    except FileNotFoundError:
        raise RepositoryError(f"target file missing from the repository: {path}") from None
    except Exception as exc:  # tuf LengthOrHashMismatchError
        raise RepositoryError(f"target file {path} does not match its metadata: {exc}") from None
    return data


def recall_document(session: Session, model: str) -> dict:
    """The model's signed recall list (empty when nothing was recalled)."""
    role = session.repo.md(model).signed
    tf = role.targets.get(recalls_target_path(model))
    if tf is None:
        return {"model": model, "recalled": []}
    return json.loads(read_target(session, tf))


def list_releases(session: Session, model: str | None = None, include_recalled: bool = True) -> list[Release]:
    models = [model] if model else session.repo.models()
    if model:
        require_model(session, model)
    out: list[Release] = []
    for m in models:
        for tf in session.repo.md(m).signed.targets.values():
            custom = tf.custom if isinstance(tf.custom, dict) else {}
            if custom.get("type") != "package":
                continue
            out.append(
                Release(
                    model=m,
                    version=custom["version"],
                    security_counter=custom["security_counter"],
                    channel=custom.get("channel", "stable"),
                    package_kind=custom.get("package_kind", "full"),
                    target=tf.path,
                    length=tf.length,
                    sha256=tf.hashes["sha256"],
                )
            )
        if include_recalled:
            for r in recall_document(session, m)["recalled"]:
                out.append(
                    Release(
                        model=m,
                        version=r["version"],
                        security_counter=r["security_counter"],
                        channel=r.get("channel", "stable"),
                        package_kind=r.get("package_kind", "full"),
                        target=r["target"],
                        length=r.get("length", 0),
                        sha256=r["sha256"],
                        status="recalled",
                        reason=r["reason"],
                        recalled_at=r["recalled_at"],
                    )
                )
    out.sort(key=lambda r: (r.model, parse_version(r.version)))
    return out


def last_published(session: Session, model: str) -> tuple[Release | None, Release | None]:
    """(highest version, highest security counter) ever published for `model`,
    recalled releases included: a recalled version is never reused."""
    rels = list_releases(session, model)
    if not rels:
        return None, None
    return (
        max(rels, key=lambda r: parse_version(r.version)),
        max(rels, key=lambda r: r.security_counter),
    )


def check_publishable(session: Session, pkg: PackageInfo) -> None:
    require_model(session, pkg.model)
    if pkg.kind == "patch":
        base = pkg.manifest["base_version"]
        if not any(r.version == base for r in list_releases(session, pkg.model)):
            raise UnknownRelease(
                f"{pkg.model} {pkg.version} is a patch over {base}, which was never published "
                f"for {pkg.model}: publish the full {base} package first"
            )
    top_v, top_c = last_published(session, pkg.model)
    if top_v is not None and parse_version(pkg.version) <= parse_version(top_v.version):
        raise VersionNotIncreasing(
            f"{pkg.model} {pkg.version} is not above the last published version "
            f"{top_v.version} ({top_v.status}); build the package with a higher --version"
        )
    if top_c is not None and pkg.security_counter <= top_c.security_counter:
        raise CounterNotIncreasing(
            f"security counter {pkg.security_counter} of {pkg.model} {pkg.version} is not above "
            f"{top_c.security_counter} (published with {top_c.version}); "
            "build the package with a higher --security-counter"
        )


def publish_package(session: Session, package_path: Path, channel: str = "stable", urgent: bool = False,
                    held: bool = False) -> Release:
    """Verify the package, add it (and its SBOM) to its model's role, then a new
    snapshot and timestamp; files written first, ``timestamp.json`` last.
    ``urgent``: a security patch devices may install outside their maintenance
    window (never during an infusion); signed as the custom field ``urgent``.
    ``held``: offered to no device yet (``rollout_percent`` 0) until a staged
    rollout opens it (:mod:`.rollout`)."""
    if channel not in CHANNELS:
        raise ConfigError(f"unknown channel {channel!r}: use one of {', '.join(CHANNELS)}")
    pkg = read_package(Path(package_path), session.config.slot_bytes)
    repo = session.repo
    repo.check_root_not_expired()
    check_publishable(session, pkg)
    model = pkg.model
    repo.unlock(model, "snapshot", "timestamp")
    m = pkg.manifest
    custom = {
        "type": "package",
        "model": model,
        "compatible_models": m["compatible_models"],
        "version": pkg.version,
        "security_counter": pkg.security_counter,
        "channel": channel,
        "package_kind": pkg.kind,
        "base_version": m.get("base_version"),
        "min_base_version": m["min_base_version"],
        "manifest_sha256": pkg.manifest_sha256,
        "manifest_length": len(pkg.manifest_bytes),
    }
    if urgent:
        custom["urgent"] = True
    if held:
        custom["rollout_percent"] = 0
    tf = repo.stage_target(package_target_path(model, pkg.version), pkg.data, custom)
    sbom = pkg.sbom()
    sf = repo.stage_target(
        sbom_target_path(model, pkg.version),
        sbom,
        {"type": "sbom", "model": model, "version": pkg.version, "format": m["sbom"]["format"]},
    )
    with repo.edit_targets(model) as role:
        role.targets[tf.path] = tf
        role.targets[sf.path] = sf
    repo.publish_top()
    repo.commit(f"publish of {model} {pkg.version}")
    return Release(
        model=model,
        version=pkg.version,
        security_counter=pkg.security_counter,
        channel=channel,
        package_kind=pkg.kind,
        target=tf.path,
        length=tf.length,
        sha256=hashlib.sha256(pkg.data).hexdigest(),
    )
