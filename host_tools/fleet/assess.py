"""Security assessment of the fleet (``medsentry assess``): findings and risk scores.

Inputs, all local: ``fleet status`` (fleet.db + PKI), OSV advisories under a
folder, the CycloneDX SBOM of each release in the repository targets, the
published versions there and the local recall record. Findings per device:

``vulnerable``        an advisory matches the release (model + version) or a
                      component of its SBOM (name/purl + version); its severity
``behind``            not on the newest published, not recalled release of its
                      model (patch latency: days since that release's SBOM file appeared)
``recalled``          runs a recalled release (critical)
``cert_expiring``     certificate expires within CERT_WARN_DAYS (expired: critical)
``silent`` / ``offline``  nothing received for SILENT_AFTER_S, or last will seen
``integrity``         the newest posture report's integrity scan failed
``event_chain``       ``events verify`` finds the event log broken
``lockouts``          console lockouts reported
``stale_tuf``         the TUF metadata the device last reported trusting (its
                      posture's ``tuf``: [version, expiry] per top-level role)
                      has expired, or its timestamp (else snapshot) version is
                      older than the repository's current one, when that one
                      has been out for TUF_STALE_AFTER_S (a device checks
                      periodically: a fresh timestamp is not yet "stale")
Risk score per device = sum of its findings' weights (WEIGHTS), with the reasons.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from host_tools.collector.dbconn import fleet_db

from .advisories import SEVERITIES, Advisory, load_dir, version_key
from .reader import FleetReader
from .status import NOT_REPORTED, fleet_status, iso

SCHEMA_ID = "medsentry-assessment/1"
CERT_WARN_DAYS = 30
TUF_STALE_AFTER_S = 24 * 3600
WEIGHTS = {"unknown": 2, "low": 1, "medium": 4, "high": 7, "critical": 10}
RANK = {s: i for i, s in enumerate(("info",) + SEVERITIES)}


def json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of the assessment (assessment.schema.json beside this file)."""
    from importlib import resources

    return json.loads(resources.files(__package__).joinpath("assessment.schema.json").read_text())


class AssessError(ValueError):
    """Bad input (advisory folder missing, unknown --fail-on severity)."""


def _finding(kind: str, severity: str, text: str, **extra: Any) -> dict[str, Any]:
    return dict({"kind": kind, "severity": severity, "text": text}, **extra)


def sbom_components(targets: Path, model: str, version: str) -> list[dict[str, Any]]:
    """Components (name, version, purl) of the release's CycloneDX SBOM target, [] if none."""
    for p in sorted((targets / model).glob(f"*.{model}-{version}.cdx.json")):
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        comps = [doc.get("metadata", {}).get("component") or {}] + list(doc.get("components") or [])
        return [{"name": c.get("name"), "version": c.get("version"), "purl": c.get("purl")}
                for c in comps if c.get("name") and c.get("version") and c.get("type") != "file"]
    return []


def published(targets: Path, recalled: set[tuple[str, str]]) -> dict[str, tuple[str, float]]:
    """model -> (newest published, not recalled version, when its SBOM target was written)."""
    out: dict[str, tuple[str, float]] = {}
    if not targets.is_dir():
        return out
    for p in targets.glob("*/*.cdx.json"):
        model = p.parent.name
        base = p.name.split(".", 1)[1]  # <sha256>.<model>-<version>.cdx.json
        version = base[len(model) + 1:-len(".cdx.json")]
        if (model, version) in recalled:
            continue
        try:
            key = version_key(version)
        except ValueError:
            continue
        if model not in out or key > version_key(out[model][0]):
            out[model] = (version, p.stat().st_mtime)
    return out


def recalls(workdir: Path) -> dict[tuple[str, str], str]:
    """(model, version) -> reason, from the local recall record
    (``{"recalls": [{"model", "version", "reason", ...}]}``, release/recall.py)."""
    try:
        doc = json.loads((workdir / "release" / "recalls.json").read_text())
    except (OSError, ValueError):
        return {}
    entries = doc.get("recalls") if isinstance(doc, dict) else None
    return {(str(r["model"]), str(r["version"])): str(r.get("reason", ""))
            for r in entries or [] if isinstance(r, dict) and "model" in r and "version" in r}


def repository_tuf(rdir: Path) -> dict[str, Any] | None:
    """The repository's current timestamp: {"timestamp": version, "snapshot":
    version, "expires": epoch, "since": when the file was written}, None when
    there is no repository (or no readable timestamp.json)."""
    path = rdir / "repository" / "metadata" / "timestamp.json"
    try:
        signed = json.loads(path.read_text())["signed"]
        return {"timestamp": int(signed["version"]),
                "snapshot": int(signed["meta"]["snapshot.json"]["version"]),
                "expires": datetime.fromisoformat(signed["expires"].replace("Z", "+00:00")).timestamp(),
                "since": path.stat().st_mtime}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def device_tuf(reader: FleetReader | None, device_id: str) -> dict[str, list[Any]] | None:
    """{role: [version, expires]} from the device's newest posture report that carries it."""
    p = reader.last_posture(device_id) if reader is not None else None
    tuf = (p or {}).get("report", {}).get("tuf") if p else None
    if not isinstance(tuf, dict):
        return None
    return {r: v for r, v in tuf.items() if isinstance(v, list) and len(v) == 2 and isinstance(v[0], int)}


def tuf_findings(tuf: dict[str, list[Any]] | None, repo: dict[str, Any] | None, now: float) -> list[dict[str, Any]]:
    if not tuf:
        return []
    expired = sorted(r for r, (_, exp) in tuf.items() if isinstance(exp, (int, float)) and exp <= now)
    if expired:
        when = min(tuf[r][1] for r in expired)
        return [_finding("stale_tuf", "high", f"trusted TUF {', '.join(expired)} expired {iso(when)}: "
                         "no successful update check since", roles=expired)]
    if repo is None or now - repo["since"] < TUF_STALE_AFTER_S:
        return []
    for role in ("timestamp", "snapshot"):
        if role in tuf:
            have, current = tuf[role][0], repo[role]
            if have < current:
                age_h = int((now - repo["since"]) // 3600)
                return [_finding("stale_tuf", "medium", f"trusts TUF {role} v{have}, repository at v{current} "
                                 f"for {age_h} h", role=role, device_version=have, repository_version=current)]
            return []
    return []


def device_findings(d: dict[str, Any], advisories: list[Advisory], comps: list[dict[str, Any]],
                    newest: tuple[str, float] | None, recalled: dict[tuple[str, str], str],
                    certs_now: float, tuf: dict[str, list[Any]] | None = None,
                    repo_tuf: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out = []
    model, fw = d["model"], d["firmware"]
    if fw != NOT_REPORTED:
        targets = [{"name": f"medsentry-{model}", "version": fw, "purl": None}] + comps
        for adv in advisories:
            hits = [c for c in targets if adv.matches(c["name"], c["version"], c["purl"])]
            if hits:
                out.append(_finding("vulnerable", adv.severity, f"{adv.id}: {adv.summary}", advisory=adv.id,
                                    aliases=adv.aliases, component=f"{hits[0]['name']} {hits[0]['version']}"))
        if (model, fw) in recalled:
            out.append(_finding("recalled", "critical", f"runs recalled {fw}: {recalled[(model, fw)]}"))
        if newest and version_key(fw) < version_key(newest[0]):
            days = max(0, int((certs_now - newest[1]) // 86400))
            out.append(_finding("behind", "medium", f"{fw} < newest {newest[0]} (released {days} d ago)",
                                newest=newest[0], latency_days=days))
    if d["cert_not_after"] != NOT_REPORTED:
        left = (datetime.fromisoformat(d["cert_not_after"]).timestamp() - certs_now) / 86400
        if left < 0:
            out.append(_finding("cert_expiring", "critical", f"certificate expired {-int(left)} d ago"))
        elif left < CERT_WARN_DAYS:
            out.append(_finding("cert_expiring", "high", f"certificate expires in {int(left)} d"))
    if d["link"] in ("silent", "offline"):
        out.append(_finding(d["link"], "medium", f"{d['link']}: last seen {d['last_seen'] or 'never'}"))
    if d["integrity"] == "violation":
        out.append(_finding("integrity", "critical", "integrity scan failed"))
    if d["event_chain"] == "broken":
        out.append(_finding("event_chain", "critical", "security event log chain broken"))
    if isinstance(d["console_lockouts"], int) and d["console_lockouts"] > 0:
        out.append(_finding("lockouts", "high", f"{d['console_lockouts']} console lockouts"))
    out += tuf_findings(tuf, repo_tuf, certs_now)
    return out


def assess(workdir: str | Path, advisories_dir: str | Path | None, now: float | None = None,
           release_dir: str | Path | None = None) -> dict[str, Any]:
    """``release_dir``: the release tools' work directory (repository, recall
    record); default ``workdir`` as the CLI lays it out."""
    workdir = Path(workdir)
    rdir = workdir if release_dir is None else Path(release_dir)
    now = time.time() if now is None else now
    advs, problems = ([], [])
    if advisories_dir is not None:
        if not Path(advisories_dir).is_dir():
            raise AssessError(f"no advisory folder {advisories_dir}")
        advs, problems = load_dir(advisories_dir)
    status = fleet_status(workdir, now=now)
    targets = rdir / "repository" / "targets"
    rec = recalls(rdir)
    newest = published(targets, set(rec))
    repo_tuf = repository_tuf(rdir)
    reader = FleetReader(fleet_db(workdir))  # fleet_status above raised ReaderError when there is none
    devices = []
    try:
        tufs = {d["device_id"]: device_tuf(reader, d["device_id"]) for d in status["devices"]}
    finally:
        reader.close()
    for d in status["devices"]:
        comps = sbom_components(targets, d["model"], d["firmware"]) if d["firmware"] != NOT_REPORTED else []
        f = device_findings(d, advs, comps, newest.get(d["model"]), rec, now, tufs[d["device_id"]], repo_tuf)
        f.sort(key=lambda x: -RANK.get(x["severity"], 0))
        devices.append(dict(d, findings=f, components=comps, tuf=tufs[d["device_id"]],
                            risk=sum(WEIGHTS.get(x["severity"], 0) for x in f)))
    devices.sort(key=lambda x: (-x["risk"], x["device_id"]))
    by_sev = {s: 0 for s in SEVERITIES}
    for d in devices:
        for x in d["findings"]:
            if x["severity"] in by_sev:
                by_sev[x["severity"]] += 1
    by_version: dict[str, int] = {}
    for d in devices:
        key = f"{d['model']} {d['firmware']}"
        by_version[key] = by_version.get(key, 0) + 1
    return {
        "schema": SCHEMA_ID,
        "generated_at": iso(now),
        "advisories": [{"id": a.id, "aliases": a.aliases, "severity": a.severity, "summary": a.summary}
                       for a in advs],
        "advisory_problems": problems,
        "newest": {m: {"version": v, "published_at": iso(t)} for m, (v, t) in sorted(newest.items())},
        "repository_tuf": None if repo_tuf is None else {
            "timestamp": repo_tuf["timestamp"], "snapshot": repo_tuf["snapshot"],
            "expires": iso(repo_tuf["expires"]), "since": iso(repo_tuf["since"])},
        "devices": devices,
        "releases": status["releases"],
        "findings_by_severity": by_sev,
        "fleet_by_version": dict(sorted(by_version.items())),
    }


def worst(report: dict[str, Any]) -> str:
    """The highest finding severity in the report ("info" when none)."""
    sev = "info"
    for d in report["devices"]:
        for x in d["findings"]:
            if RANK.get(x["severity"], 0) > RANK[sev]:
                sev = x["severity"]
    return sev


def fails(report: dict[str, Any], fail_on: str) -> bool:
    if fail_on not in RANK:
        raise AssessError(f"unknown severity {fail_on!r} (one of {', '.join(SEVERITIES)})")
    return RANK[worst(report)] >= RANK[fail_on] and worst(report) != "info"
