"""Admission policy: which finding sends a device where.

Inputs: the fleet PKI (who exists, which model, revoked or not), the fleet
store (``<workdir>/fleet.db``, or the PostgreSQL database the collector records in
``fleet-db.url``), the operators' quarantine marks (``nac_quarantine`` in the NAC
host's ``<workdir>/fleet.db``) and the recall record ``<workdir>/release/recalls.json``.
Every table is optional: an absent table (a fleet database from an older
collector, or none yet) means "no finding", never a refusal.

================================  =============================================
finding                           decision
================================  =============================================
no PKI record for the CN          refuse (unknown device)
certificate revoked               refuse (also refused by the CRL in TLS)
model without a segment           refuse (fail closed: nowhere safe to put it)
quarantine command (nac_quarantine, not cleared)  quarantine
integrity violation (latest ``posture`` row has integrity_ok = 0)  quarantine
critical security event (``sec_events.severity`` = critical)       quarantine
firmware recalled (``devices.fw`` in the model's recall list)      quarantine
silent past its period            admit, finding reported only: the quarantine
                                  segment cannot reach the broker, so a silent
                                  device put there could never report again
none of the above                 admit to the model's clinical segment
================================  =============================================

The quarantine segment reaches only the update server, so a quarantined
device can still take the patch that fixes it.
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from host_tools.collector.dbconn import DatabaseURLError, fleet_db, store_missing
from host_tools.fleet.reader import FleetReader, ReaderError
from host_tools.network.config import NetworkConfig, Segment
from host_tools.pki import FleetPKI
from host_tools.pki.records import DeviceRecord

ADMIT = "admit"
QUARANTINE = "quarantine"
REFUSE = "refuse"
#: A device not heard from for this long gets the finding "silent" (reported only).
SILENT_AFTER_S = 24 * 3600.0
QUARANTINE_TABLE = "nac_quarantine"


@dataclass(frozen=True)
class Decision:
    """The admission answer for one certificate CN."""

    device_id: str
    action: str
    segment: Segment | None
    reasons: tuple[str, ...]
    serial: str = ""

    def to_json(self) -> dict[str, object]:
        return {"device_id": self.device_id, "action": self.action,
                "segment": self.segment.name if self.segment else None,
                "vlan": self.segment.vlan if self.segment else None,
                "reasons": list(self.reasons)}


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def ensure_quarantine_table(conn: sqlite3.Connection) -> None:
    conn.execute(f"CREATE TABLE IF NOT EXISTS {QUARANTINE_TABLE} (device_id TEXT PRIMARY KEY, "
                 "reason TEXT NOT NULL, at REAL NOT NULL)")


def set_quarantine(db_path: Path, device_id: str, reason: str) -> None:
    """Record an operator's quarantine command (the next admission obeys it)."""
    with closing(sqlite3.connect(db_path)) as conn, conn:
        ensure_quarantine_table(conn)
        conn.execute(f"INSERT OR REPLACE INTO {QUARANTINE_TABLE} VALUES (?, ?, ?)",
                     (device_id, reason, time.time()))


def clear_quarantine(db_path: Path, device_id: str) -> bool:
    if not db_path.exists():
        return False
    with closing(sqlite3.connect(db_path)) as conn, conn:
        ensure_quarantine_table(conn)
        cur = conn.execute(f"DELETE FROM {QUARANTINE_TABLE} WHERE device_id=?", (device_id,))
        return cur.rowcount > 0


def _recalled(workdir: Path) -> set[tuple[str, str]]:
    path = workdir / "release" / "recalls.json"
    try:
        doc = json.loads(path.read_text())
        return {(str(r["model"]), str(r["version"])) for r in doc.get("recalls", [])}
    except FileNotFoundError:
        return set()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        # An unreadable recall record is an unknown state: fail closed, loudly.
        raise PolicyError(f"{path}: unreadable recall record") from None


class PolicyError(RuntimeError):
    """The fleet data needed for a decision cannot be read."""


def fleet_findings(workdir: Path, now: float | None = None) -> dict[str, list[str]]:
    """device id -> findings (strings ``kind: detail``) from the fleet store (SQLite
    ``fleet.db`` or the collector's PostgreSQL, ``dbconn.fleet_db``), the quarantine
    marks and the recalls. A store that cannot be read is a PolicyError (fail closed)."""
    now = time.time() if now is None else now
    findings: dict[str, list[str]] = {}

    def add(dev: str, text: str) -> None:
        findings.setdefault(dev, []).append(text)

    for dev, reason in _quarantine_marks(workdir / "fleet.db"):
        add(dev, f"quarantine command: {reason}")
    try:
        location = fleet_db(workdir)
        if store_missing(location):
            return findings
        reader = FleetReader(location, require_devices=False)
    except (DatabaseURLError, ReaderError) as exc:
        raise PolicyError(str(exc)) from None
    try:
        if reader.has("posture"):
            rows = reader.rows("SELECT device_id, integrity_ok FROM posture p WHERE id = "
                               "(SELECT MAX(id) FROM posture q WHERE q.device_id = p.device_id)")
            for r in rows:
                if r["integrity_ok"] == 0:
                    add(r["device_id"], "integrity violation: latest posture report")
        if reader.has("sec_events"):
            for r in reader.rows("SELECT DISTINCT device_id, kind FROM sec_events WHERE severity = 'critical'"):
                add(r["device_id"], f"critical security event: {r['kind']}")
        recalled = _recalled(workdir)
        devices = reader.rows("SELECT device_id, fw, last_seen FROM devices") if reader.has("devices") else []
        for r in devices:
            fw, last = r["fw"], r["last_seen"]
            if fw and any(v == fw for (_m, v) in recalled):
                add(r["device_id"], f"recalled firmware: {fw}")
            if last is not None and now - last > SILENT_AFTER_S:
                add(r["device_id"], f"silent: last seen {int(now - last)} s ago")
    except ReaderError as exc:
        raise PolicyError(str(exc)) from None
    finally:
        reader.close()
    return findings


def _quarantine_marks(db_path: Path) -> list[tuple[str, str]]:
    """Operators' quarantine commands: kept in the NAC host's own ``fleet.db``."""
    if not db_path.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
            if QUARANTINE_TABLE not in _tables(conn):
                return []
            return list(conn.execute(f"SELECT device_id, reason FROM {QUARANTINE_TABLE}"))
    except sqlite3.Error as exc:
        raise PolicyError(f"{db_path}: {exc}") from None


def _is_recall_for(rec: DeviceRecord, finding: str, recalled: set[tuple[str, str]]) -> bool:
    """A recall finding counts only for the device's own model."""
    fw = finding.split(": ", 1)[1]
    return (rec.model, fw) in recalled


def decide(rec: DeviceRecord | None, device_id: str, findings: list[str], cfg: NetworkConfig,
           recalled: set[tuple[str, str]]) -> Decision:
    """The policy table above, for one device."""
    if rec is None:
        return Decision(device_id, REFUSE, None, ("unknown device: no fleet certificate record",))
    if rec.revoked:
        return Decision(device_id, REFUSE, None, (f"certificate revoked at {rec.revoked}",), rec.serial)
    seg = cfg.segment_for_model(rec.model)
    if seg is None:
        return Decision(device_id, REFUSE, None, (f"model {rec.model} has no segment in network.json",),
                        rec.serial)
    kept = [f for f in findings
            if not f.startswith("recalled firmware: ") or _is_recall_for(rec, f, recalled)]
    serious = [f for f in kept if not f.startswith("silent: ")]
    if serious:
        return Decision(device_id, QUARANTINE, cfg.quarantine, tuple(kept), rec.serial)
    return Decision(device_id, ADMIT, seg, tuple(kept) or ("healthy",), rec.serial)


def fleet_decisions(pki: FleetPKI, cfg: NetworkConfig, now: float | None = None) -> list[Decision]:
    """One decision per device the PKI knows (unknown CNs are refused by default)."""
    findings = fleet_findings(pki.workdir, now)
    recalled = _recalled(pki.workdir)
    return [decide(rec, rec.device_id, findings.get(rec.device_id, []), cfg, recalled)
            for rec in pki.devices()]
