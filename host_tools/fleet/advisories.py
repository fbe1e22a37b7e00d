"""OSV-schema advisories (one JSON file each under a folder) and version matching.

Only what matching needs is read: ``id``, ``aliases``, ``summary``, the
severity label (``database_specific.severity``: LOW/MODERATE/MEDIUM/HIGH/CRITICAL,
as GitHub's OSV records carry it), and ``affected[].package`` (name, purl) with
``ranges`` (SEMVER/ECOSYSTEM events: introduced, fixed, last_affected; GIT
ranges are carried for readers and not compared) and ``versions``. A file that is not a valid advisory is reported, never skipped
silently, and never stops the others from loading.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEVERITIES = ("low", "medium", "high", "critical")
_SEV_ALIASES = {"moderate": "medium"}
_NUM = re.compile(r"(\d+)")
_VERSION = re.compile(r"^\d+(\.\d+)*$")
_KEY_PARTS = 8


class AdvisoryError(ValueError):
    """An advisory file that is not OSV JSON of the expected shape."""


def version_key(v: str) -> tuple[int, ...]:
    """``v1.22.0`` / ``1.22`` / ``2.28.2`` -> a sortable key. A pre-release
    (``1.29.0-preview``) sorts just below its release and above every earlier
    version (SemVer order); a ``+build`` suffix is ignored."""
    text = str(v).lstrip("vV").split("+")[0]
    core, pre = text.split("-")[0], "-" in text
    if not _VERSION.match(core):
        raise AdvisoryError(f"not a version: {v!r}")
    nums = [int(m) for m in _NUM.findall(core)]
    nums += [0] * (max(0, _KEY_PARTS - len(nums)))
    return tuple(nums) + (0 if pre else 1,)


def severity_of(doc: dict[str, Any]) -> str:
    sev = str((doc.get("database_specific") or {}).get("severity", "")).lower()
    sev = _SEV_ALIASES.get(sev, sev)
    return sev if sev in SEVERITIES else "unknown"


def purl_base(purl: str | None) -> str | None:
    """A purl without version, qualifiers or subpath (``pkg:github/micropython/micropython``)."""
    if not purl:
        return None
    return purl.split("?")[0].split("#")[0].split("@")[0].lower()


@dataclass
class Affected:
    name: str
    purl: str | None
    events: list[list[tuple[str, str]]] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)

    def affects(self, version: str) -> bool:
        if version in self.versions:
            return True
        v = version_key(version)
        for events in self.events:
            hit = False
            for kind, at in events:
                if kind == "introduced" and (at == "0" or v >= version_key(at)):
                    hit = True
                elif kind == "fixed" and v >= version_key(at):
                    hit = False
                elif kind == "last_affected" and v > version_key(at):
                    hit = False
            if hit:
                return True
        return False


@dataclass
class Advisory:
    id: str
    aliases: list[str]
    summary: str
    severity: str
    affected: list[Affected]
    path: str

    def matches(self, name: str, version: str, purl: str | None = None) -> bool:
        base = purl_base(purl)
        for a in self.affected:
            same = (base is not None and purl_base(a.purl) == base) or a.name.lower() == name.lower()
            try:
                if same and a.affects(version):
                    return True
            except AdvisoryError:
                continue  # a component version we cannot order is not a match
        return False


def parse(doc: Any, path: str = "") -> Advisory:
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not isinstance(doc.get("affected"), list):
        raise AdvisoryError(f"{path}: not an OSV advisory (needs id and affected)")
    affected = []
    for a in doc["affected"]:
        pkg = a.get("package") if isinstance(a, dict) else None
        if not isinstance(pkg, dict) or not isinstance(pkg.get("name"), str):
            raise AdvisoryError(f"{path}: affected entry without package name")
        ranges = []
        for r in a.get("ranges") or []:
            if isinstance(r, dict) and r.get("type") == "GIT":
                continue  # commit ranges (kept for readers) are not compared with release versions
            evs = [(k, str(v)) for e in r.get("events", []) for k, v in e.items()]
            for k, v in evs:
                if k != "introduced" or v != "0":
                    version_key(v)
            ranges.append(evs)
        affected.append(Affected(pkg["name"], pkg.get("purl"), ranges, [str(v) for v in a.get("versions") or []]))
    return Advisory(doc["id"], list(doc.get("aliases") or []), str(doc.get("summary", "")),
                    severity_of(doc), affected, path)


def load_dir(folder: str | Path) -> tuple[list[Advisory], list[str]]:
    """(advisories, problems) from every ``*.json`` under ``folder`` (recursively)."""
    out, problems = [], []
    for p in sorted(Path(folder).rglob("*.json")):
        try:
            out.append(parse(json.loads(p.read_text()), str(p)))
        except (OSError, ValueError) as exc:
            problems.append(f"{p}: {exc}")
    return out, problems
