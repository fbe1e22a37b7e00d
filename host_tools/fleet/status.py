"""``medsentry fleet status``: per device and per release, from fleet.db and the PKI.

Device state comes only from what the collector stored (sealed status records,
update agent reports, posture reports) and the PKI device records (model,
certificate expiry); nothing is typed in by hand.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from host_tools.collector.dbconn import fleet_db
from host_tools.pki import FleetPKI
from host_tools.pki.errors import PkiError

from updater.install.policy import in_rollout

from .advisories import version_key
from .published import offered
from .reader import FleetReader

NOT_REPORTED = "not reported"
#: A device that sent nothing for this long is shown offline even without a last will.
SILENT_AFTER_S = 600

#: Update agent step -> state of the release the report names.
RELEASE_STATE = {
    "available": "pending",
    "downloading": "downloading",
    "installed": "installed",
    "activated": "installed",
    "trial": "installed",
    "confirmed": "confirmed",
    "rolling_back": "rolled_back",
    "deferred": "deferred",
    "rejected": "rejected",
}
RELEASE_COLUMNS = ("pending", "downloading", "installed", "confirmed", "rolled_back", "deferred", "rejected")
_OTHER_SLOT = {"a": "b", "b": "a"}


def iso(t: float | None) -> str | None:
    """Unix seconds -> ISO 8601 UTC (``2026-12-02T12:00:00Z``); None stays None."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def release_state(report: dict[str, Any]) -> tuple[str | None, str | None]:
    """(version, state) a report says about a release; (None, None) if about none."""
    step, d = report.get("step"), report.get("detail") or {}
    if step == "refused" and d.get("newest"):
        reason = str(d.get("reason") or "")
        return str(d["newest"]), "rolled_back" if "rolled back" in reason else "rejected"
    state = RELEASE_STATE.get(step or "")
    return (report.get("version"), state) if state and report.get("version") else (None, None)


def running_slot(reports: list[dict[str, Any]]) -> str | None:
    """The slot the device runs, as far as its update reports tell (None: unknown)."""
    slot = staged = None
    for r in reports:
        step, d = r.get("step"), r.get("detail") or {}
        if step == "installed" and d.get("slot") in _OTHER_SLOT:
            staged = d["slot"]
            slot = slot or _OTHER_SLOT[staged]
        elif step in ("activated", "trial", "confirmed") and staged:
            slot = staged
        elif step == "rolling_back" and staged:
            slot, staged = _OTHER_SLOT[staged], None
    return slot


def updates_state(reports: list[dict[str, Any]], posture: dict[str, Any] | None) -> tuple[str, str | None]:
    """("on" | "off" | NOT_REPORTED, why off): the newest update report decides (an
    agent whose updates are off reports step "off" with the reason once per boot; one
    that checks reports every check), else the posture report's ``updates`` field."""
    for r in reversed(reports):
        if r.get("step") == "off":
            return "off", r.get("reason")
        if r.get("step") not in (None, "config_error", "error"):
            return "on", None
    rep = (posture or {}).get("report") or {}
    if rep.get("updates") in ("on", "off"):
        return rep["updates"], None
    return NOT_REPORTED, None


def _security(reader: FleetReader, device_id: str) -> dict[str, Any]:
    p = reader.last_posture(device_id)
    chain = reader.chain_state(device_id)
    out: dict[str, Any] = {"integrity": NOT_REPORTED, "event_chain": chain or NOT_REPORTED,
                           "console_lockouts": NOT_REPORTED}
    if p is not None:
        if p.get("integrity_ok") is not None:
            out["integrity"] = "ok" if p["integrity_ok"] else "violation"
        console = (p.get("report") or {}).get("console")
        if isinstance(console, dict) and isinstance(console.get("lockouts"), int):
            out["console_lockouts"] = console["lockouts"]
        q = (p.get("report") or {}).get("quarantine")
        if isinstance(q, bool):
            out["device_quarantine"] = q  # as the device itself reports it
    return out


def pki_records(workdir: Path) -> dict[str, Any]:
    try:
        return {r.device_id: r for r in FleetPKI(workdir).devices()}
    except (PkiError, OSError, ValueError):
        return {}


def device_status(reader: FleetReader, row: dict[str, Any], rec: Any, now: float) -> dict[str, Any]:
    dev = row["device_id"]
    reports = reader.updates(dev)
    last = reports[-1] if reports else None
    rollbacks = [r for r in reports if r.get("step") == "rolling_back"]
    last_seen = row.get("last_seen")
    if row.get("status") == "offline":
        link = "offline"
    elif last_seen is None or now - last_seen > SILENT_AFTER_S:
        link = "silent"
    else:
        link = "online"
    upd, upd_off = updates_state(reports, reader.last_posture(dev))
    out: dict[str, Any] = {
        "device_id": dev,
        "updates": upd,
        "updates_off_reason": upd_off,
        "model": rec.model if rec else NOT_REPORTED,
        "firmware": row.get("fw") or NOT_REPORTED,
        "slot": running_slot(reports) or NOT_REPORTED,
        "last_seen": iso(last_seen),
        "silent_for_s": None if last_seen is None else max(0, int(now - last_seen)),
        "link": link,
        "update_step": last["step"] if last else None,
        "update_version": last["version"] if last else None,
        "update_reason": last["reason"] if last else None,
        "update_at": iso(last["received_at"]) if last else None,
        "last_rollback": None if not rollbacks else {
            "version": rollbacks[-1]["version"], "reason": rollbacks[-1]["reason"],
            "at": iso(rollbacks[-1]["received_at"])},
        "cert_not_after": rec.not_after if rec else NOT_REPORTED,
        "cert_revoked": bool(rec and rec.revoked),
        "records": row.get("records") or 0,
        "dropped": row.get("dropped"),
    }
    out.update(_security(reader, dev))
    return out


def _vkey(version: str) -> tuple[int, ...] | None:
    try:
        return version_key(version)
    except ValueError:
        return None


def targeted(d: dict[str, Any], offers: dict[str, list[dict[str, Any]]]) -> str | None:
    """The release the repository offers device ``d`` now, as the device itself would
    choose it: its model's newest stable package above its firmware whose signed
    rollout stage includes it (updater.install.policy.in_rollout, the device's own
    function). None: nothing newer offered, or firmware/model unknown."""
    fw = _vkey(d["firmware"]) if d["firmware"] != NOT_REPORTED else None
    if fw is None or d["updates"] == "off":
        return None
    best: tuple[tuple[int, ...], str] | None = None
    for c in offers.get(d["model"], []):
        v = _vkey(str(c["version"]))
        if v is None or v <= fw or c.get("channel", "stable") != "stable":
            continue
        try:
            if not in_rollout(c, d["device_id"]):
                continue
        except TypeError:
            continue  # a malformed stage: the device skips the release too
        if best is None or v > best[0]:
            best = (v, str(c["version"]))
    return best[1] if best else None


def release_counts(devices: list[dict[str, Any]], reports: dict[str, list[dict[str, Any]]],
                   offers: dict[str, list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """Per (model, version): devices in each state (each device's newest report
    about that version), plus ``running`` (devices whose firmware is that version).
    ``pending``: devices the repository offers the release to now (``targeted``) that
    have not started on it (no report about it, or only "available"); with no
    repository, devices whose newest report about it is "available"."""
    table: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(model: str, version: str) -> dict[str, Any]:
        return table.setdefault((model, version), dict(
            {"model": model, "version": version, "running": 0}, **{c: 0 for c in RELEASE_COLUMNS}))

    for d in devices:
        latest: dict[str, str] = {}
        for r in reports.get(d["device_id"], []):
            version, state = release_state(r)
            if version:
                latest[version] = state  # type: ignore[assignment]
        offer = targeted(d, offers or {})
        if offer is not None and latest.get(offer) is None:
            latest[offer] = "pending"
        for version, state in latest.items():
            entry(d["model"], version)[state] += 1
        if d["firmware"] != NOT_REPORTED:
            entry(d["model"], d["firmware"])["running"] += 1
    return [table[k] for k in sorted(table)]


def with_rollouts(releases: list[dict[str, Any]], workdir: Path) -> list[dict[str, Any]]:
    """Add ``rollout`` ("50 % running", "0 % halted", ...; None: no staged rollout)
    from ``release/rollouts.json``; a rollout no device reported on yet gets its row."""
    from host_tools.release.errors import ConfigError
    from host_tools.release.rollout import load_plans

    try:
        plans = load_plans(workdir)
    except ConfigError:
        plans = {}
    rows = {(r["model"], r["version"]): dict(r, rollout=None) for r in releases}
    for p in plans.values():
        key = (p["model"], p["version"])
        row = rows.setdefault(key, dict({"model": key[0], "version": key[1], "running": 0},
                                        **{c: 0 for c in RELEASE_COLUMNS}))
        row["rollout"] = f"{p['percent']} % {p['state']}"
    return [rows[k] for k in sorted(rows)]


#: A device in fleet.db without a PKI record (the policy refuses unknown CNs).
UNKNOWN_ADMISSION = {"segment": None, "admission": "refuse",
                     "admission_reason": "unknown device: no fleet certificate record"}


def admission_by_device(workdir: Path, now: float) -> dict[str, dict[str, Any]]:
    """The NAC policy's answer per device (host_tools/nac/policy.py, not re-derived here):
    ``segment``, ``admission`` (admit/quarantine/refuse) and ``admission_reason``."""
    from host_tools.nac.policy import fleet_decisions
    from host_tools.network.config import load_config

    try:
        pki = FleetPKI(workdir)
        models = sorted({r.model for r in pki.devices()})
        cfg = load_config(workdir, models)
        decisions = fleet_decisions(pki, cfg, now)
    except (PkiError, ValueError, OSError):
        return {}
    return {d.device_id: {"segment": d.segment.name if d.segment else None, "admission": d.action,
                          "admission_reason": "; ".join(d.reasons)} for d in decisions}


def fleet_status(workdir: str | Path, now: float | None = None, release_dir: str | Path | None = None
                 ) -> dict[str, Any]:
    """``{"generated_at", "devices": [...], "releases": [...], "security_tables": bool}``.
    `release_dir`: the release tools' work directory when it is not `workdir`."""
    workdir = Path(workdir)
    rdir = Path(release_dir or workdir)
    now = time.time() if now is None else now
    reader = FleetReader(fleet_db(workdir))
    try:
        recs = pki_records(workdir)
        admission = admission_by_device(workdir, now)
        devices, reports = [], {}
        for row in reader.devices():
            if row["device_id"] == "?":
                continue
            reports[row["device_id"]] = reader.updates(row["device_id"])
            d = device_status(reader, row, recs.get(row["device_id"]), now)
            d.update(admission.get(row["device_id"], UNKNOWN_ADMISSION))
            devices.append(d)
        return {
            "generated_at": iso(now),
            "devices": devices,
            "releases": with_rollouts(release_counts(devices, reports, offered(rdir / "repository")), rdir),
            "security_tables": reader.has("posture") and reader.has("sec_events"),
        }
    finally:
        reader.close()
