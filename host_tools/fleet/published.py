"""What the repository offers each model now, for ``fleet status``'s "pending".

Read the way a device reads it: ``timestamp.json`` -> the snapshot it names ->
each model role's version in that snapshot -> the package targets that role
lists (a recalled release is no longer listed). Read-only, plain JSON: the
repository on this host is the one the release tools wrote; nothing is signed
or changed here, and no key is needed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _load(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    signed = doc.get("signed") if isinstance(doc, dict) else None
    return signed if isinstance(signed, dict) else None


def offered(repository: str | Path) -> dict[str, list[dict[str, Any]]]:
    """model -> custom fields of every package target its role lists now
    (``version``, ``channel``, ``manifest_sha256``, ``rollout_percent``, ...);
    {} when there is no repository."""
    md = Path(repository) / "metadata"
    ts = _load(md / "timestamp.json")
    if ts is None:
        return {}
    snap_v = ((ts.get("meta") or {}).get("snapshot.json") or {}).get("version")
    snap = _load(md / f"{snap_v}.snapshot.json") or _load(md / "snapshot.json")
    if snap is None:
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for name, meta in (snap.get("meta") or {}).items():
        role = name[:-len(".json")] if name.endswith(".json") else name
        if role in ("targets", "root", "snapshot", "timestamp") or not isinstance(meta, dict):
            continue
        signed = _load(md / f"{meta.get('version')}.{role}.json") or _load(md / f"{role}.json")
        for t in ((signed or {}).get("targets") or {}).values():
            c = t.get("custom") if isinstance(t, dict) else None
            if isinstance(c, dict) and c.get("type") == "package" and c.get("model") and c.get("version"):
                out.setdefault(str(c["model"]), []).append(c)
    return out
