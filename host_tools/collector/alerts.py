"""Fleet-side alert rules over posture reports and security events.

Each alert names the device, the rule, the evidence (event-log sequence
numbers, or posture record sequence numbers for posture-only findings) and
the time (collector receive time of the newest evidence). Rules:

``integrity_violation``  an integrity_violation event, or a posture whose
                         integrity scan is not ok
``broken_chain``         ``events verify`` finds a problem (eventchain.py)
``tuf_failures``         >= TUF_REPEAT tuf_failure events within TUF_WINDOW_S
``wrong_broker_cert``    a tls_failure event about the broker
``reboot_storm``         >= STORM_BOOTS boot events within STORM_WINDOW_S (board time)
``silent``               nothing received for SILENT_PERIODS x the posture period
``egress_blocked``       egress_blocked events (or a posture blocked count > 0)
``console_lockout``      console_lockout events (or locked accounts in posture)
``telemetry_flood``      messages of the device were shed: by the broker (over its per-client
                         rate, reported on medsentry/broker/shed) or by the collector (over
                         its spool quota); the evidence is the count
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from . import eventchain, security_db

TUF_REPEAT = 3
TUF_WINDOW_S = 3600
STORM_BOOTS = 5
STORM_WINDOW_S = 600
SILENT_PERIODS = 2
DEFAULT_PERIOD_S = 300


@dataclass
class Alert:
    rule: str
    device: str
    evidence: list[int]
    time: float
    detail: str = ""
    evidence_kind: str = "event"
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "device": self.device, "evidence": self.evidence,
                "evidence_kind": self.evidence_kind, "time": self.time,
                "time_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.time)), "detail": self.detail}


def _of(evs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for e in evs:
        if e["kind"] == kind and e["n"] is not None:
            out.setdefault(e["n"], e)
    return [out[n] for n in sorted(out)]


def _detail(e: dict[str, Any]) -> dict[str, Any]:
    """An event's detail as the device sealed it (a map), {} when it is not one."""
    try:
        d = json.loads(e["detail"] or "{}")
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def _windowed(evs: list[dict[str, Any]], count: int, window: float) -> list[dict[str, Any]] | None:
    """The first run of ``count`` events within ``window`` seconds (board time)."""
    ts = [e for e in evs if e["t"] is not None]
    for i in range(len(ts) - count + 1):
        if ts[i + count - 1]["t"] - ts[i]["t"] <= window:
            j = i + count
            while j < len(ts) and ts[j]["t"] - ts[i]["t"] <= window:
                j += 1
            return ts[i:j]
    return None


def _event_alert(rule: str, dev: str, evs: list[dict[str, Any]], detail: str) -> Alert:
    return Alert(rule, dev, [e["n"] for e in evs], max(e["received_at"] for e in evs), detail)


def device_alerts(db: Any, dev: str, now: float) -> list[Alert]:
    evs = security_db.events(db, dev)
    posts = security_db.postures(db, dev)
    out: list[Alert] = []
    iv = _of(evs, "integrity_violation")
    bad_posts = [p for p in posts if p["integrity_ok"] == 0]
    if iv or bad_posts:
        a = _event_alert("integrity_violation", dev, iv, "") if iv else Alert(
            "integrity_violation", dev, [p["seq"] for p in bad_posts], bad_posts[-1]["received_at"],
            evidence_kind="posture")
        files = (bad_posts[-1]["report"].get("integrity") or {}).get("bad") if bad_posts else None
        a.detail = "files: " + ", ".join(files) if files else (iv[-1]["detail"] or "")
        out.append(a)
    chain = eventchain.verify_device(db, dev)
    if not chain.ok:
        ev = [p.n for p in chain.problems if p.n is not None]
        last = max([e["received_at"] for e in evs] + [p["received_at"] for p in posts] + [0.0])
        out.append(Alert("broken_chain", dev, ev, last, "; ".join(p.detail for p in chain.problems[:4])))
    run = _windowed(_of(evs, "tuf_failure"), TUF_REPEAT, TUF_WINDOW_S)
    if run:
        out.append(_event_alert("tuf_failures", dev, run, f"{len(run)} TUF failures within {TUF_WINDOW_S} s"))
    tls = [e for e in _of(evs, "tls_failure") if _detail(e).get("peer") == "broker"]
    if tls:
        out.append(_event_alert("wrong_broker_cert", dev, tls, tls[-1]["detail"] or ""))
    run = _windowed(_of(evs, "boot"), STORM_BOOTS, STORM_WINDOW_S)
    if run:
        out.append(_event_alert("reboot_storm", dev, run, f"{len(run)} boots within {STORM_WINDOW_S} s"))
    for rule, kind, key in (("egress_blocked", "egress_blocked", "blocked"),
                            ("console_lockout", "console_lockout", "console")):
        evk = _of(evs, kind)
        if evk:
            out.append(_event_alert(rule, dev, evk, evk[-1]["detail"] or ""))
            continue
        hits = [p for p in posts if _posture_flag(p["report"], key)]
        if hits:
            out.append(Alert(rule, dev, [p["seq"] for p in hits], hits[-1]["received_at"], "from posture",
                             evidence_kind="posture"))
    shed = db.counters(dev).get("flood_shed", 0)
    if shed:
        last = (db.device(dev) or {}).get("last_seen") or now
        out.append(Alert("telemetry_flood", dev, [shed], last,
                         f"{shed} messages shed: the device published above the broker's per-client "
                         "limit (broker/ratelimit/) or kept more than the collector's per-device spool "
                         "quota waiting (collector/spool.py)", evidence_kind="counter"))
    return out


def _posture_flag(report: dict[str, Any], key: str) -> bool:
    v = report.get(key)
    if key == "console":
        return isinstance(v, dict) and bool(v.get("locked"))
    return isinstance(v, int) and v > 0


def silent_alerts(db: Any, now: float) -> list[Alert]:
    out = []
    posts: dict[str, dict[str, Any]] = {}
    for p in security_db.postures(db):
        posts[p["device_id"]] = p
    for dev in db.device_ids():
        d = db.device(dev) or {}
        last = d.get("last_seen")
        p = posts.get(dev)
        if p is None or last is None:
            continue  # never monitored: not silent "past its period"
        period = p["report"].get("period_s") or DEFAULT_PERIOD_S
        if now - last > SILENT_PERIODS * period:
            out.append(Alert("silent", dev, [p["seq"]], last,
                             f"nothing for {int(now - last)} s (posture period {period} s)",
                             evidence_kind="posture"))
    return out


def fleet_alerts(db: Any, now: float | None = None) -> list[Alert]:
    now = time.time() if now is None else now
    out: list[Alert] = []
    for dev in db.device_ids():
        out += device_alerts(db, dev, now)
    out += silent_alerts(db, now)
    return sorted(out, key=lambda a: (a.time, a.device, a.rule))
