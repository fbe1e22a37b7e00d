"""``release recall VERSION --reason TEXT``.

The release's package and SBOM targets are removed from its model's role (so no
TUF client can install it any more) and an entry is appended to the model's
signed recall list, the target ``<model>/recalls.json``::

    {"model": "pump-v2",
     "recalled": [{"version": "1.2.0", "security_counter": 3, "channel": "stable",
                   "package_kind": "full", "reason": "...", "recalled_at": "2026-...Z",
                   "target": "pump-v2/pump-v2-1.2.0.mspk", "sha256": "...", "length": 1234}]}

Devices download it like any target (it is signed by the model's key). The
local record ``<workdir>/release/recalls.json`` (all models, for the fleet
assessment) lands with the same journaled commit.
"""
from __future__ import annotations

import json

from .errors import ConfigError, UnknownRelease
from .package import canonical_json
from .publish import (
    Release,
    list_releases,
    package_target_path,
    recall_document,
    recalls_target_path,
    sbom_target_path,
)
from .roles.models import require_model
from .session import Session
from .versions import check_version, parse_version


def recall_release(session: Session, version: str, reason: str, model: str | None = None) -> Release:
    check_version(version)
    reason = (reason or "").strip()
    if not reason:
        raise ConfigError("a recall needs a --reason")
    if model is not None:
        require_model(session, model)
    repo = session.repo
    repo.check_root_not_expired()
    matches = [r for r in list_releases(session, model) if r.version == version]
    live = [r for r in matches if r.status == "published"]
    if not live:
        if matches:
            raise UnknownRelease(f"{matches[0].model} {version} is already recalled")
        where = f" for {model}" if model else ""
        raise UnknownRelease(f"version {version} is not published{where}")
    if len(live) > 1:
        names = ", ".join(r.model for r in live)
        raise UnknownRelease(f"version {version} is published for several models ({names}): pass --model")
    rel = live[0]
    repo.unlock(rel.model, "snapshot", "timestamp")
    doc = recall_document(session, rel.model)
    rel.status, rel.reason = "recalled", reason
    rel.recalled_at = repo.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    doc["recalled"].append(
        {
            "version": rel.version,
            "security_counter": rel.security_counter,
            "channel": rel.channel,
            "package_kind": rel.package_kind,
            "reason": reason,
            "recalled_at": rel.recalled_at,
            "target": rel.target,
            "sha256": rel.sha256,
            "length": rel.length,
        }
    )
    doc["recalled"].sort(key=lambda r: parse_version(r["version"]))
    tf = repo.stage_target(
        recalls_target_path(rel.model),
        canonical_json(doc) + b"\n",
        {"type": "recalls", "model": rel.model, "count": len(doc["recalled"])},
    )
    with repo.edit_targets(rel.model) as role:
        role.targets.pop(package_target_path(rel.model, version), None)
        role.targets.pop(sbom_target_path(rel.model, version), None)
        role.targets[tf.path] = tf
    repo.publish_top()
    repo.also_write(session.layout.recall_record, local_record(session, {rel.model: doc}))
    repo.commit(f"recall of {rel.model} {version}")
    return rel


def local_record(session: Session, changed: dict[str, dict]) -> bytes:
    """``<workdir>/release/recalls.json``: every model's recall list (`changed`
    holds the lists this change is about to publish)."""
    record = {
        "recalls": [
            dict(entry, model=m)
            for m in session.repo.models()
            for entry in (changed.get(m) or recall_document(session, m))["recalled"]
        ]
    }
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
