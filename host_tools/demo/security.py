"""Demo stage for the security monitor (issue 12 sections 1, 2, 5).

stage_security (after the update stage): waits for every board's posture
report with a completed integrity scan, then plays an attacker with the flash
chip: one board is powered off, a module is added to its active slot, the
board is powered on again; its integrity scan finds the file, the device logs
an ``integrity_violation`` and the collector raises the alert. Finally
``events verify`` runs for every board. Summary ``security``: posture_reports,
events, chains_verified, integrity_alerts, alerts (and alerts_by_rule).
"""
from __future__ import annotations

import time
from typing import Any, Callable

from host_tools.collector import eventchain, security_db
from host_tools.collector.alerts import fleet_alerts
from host_tools.demo.boards import DEMO_HEAP
from host_tools.demo.context import DEMO_BOARDS, DemoContext
from host_tools.sim import build as simbuild
from host_tools.sim import image as simimage

SCAN_TIMEOUT = 150.0
BACKDOOR = "agent/backdoor.py"


def _scanned(db: Any, name: str, after: int = 0) -> dict | None:
    for p in security_db.postures(db, name):
        if p["seq"] > after and isinstance(p["report"].get("integrity"), dict):
            return p
    return None


def wait_for(pred: Callable[[], Any], timeout: float, poll: float = 0.5) -> Any:
    """pred() polled until truthy (returned) or timeout (None)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(poll)
    return None


def stage_security(ctx: DemoContext) -> None:
    db = ctx.shared["telemetry"]["db"]
    say = ctx.console.print
    say("[bold]security monitor[/bold]: posture reports, event logs, integrity scan")
    for name in ctx.names:
        p = wait_for(lambda: _scanned(db, name), SCAN_TIMEOUT)
        integ = (p or {}).get("report", {}).get("integrity")
        say(f"  {name}: posture {'with scan ' + str(integ) if p else 'MISSING'}")
    victim = ctx.names[0]
    slot = (ctx.boards.status(victim).get("device") or {}).get("slot") or "a"
    last = (_scanned(db, victim) or {}).get("seq", 0)
    ctx.boards.stop(victim)
    simimage.factory_program(ctx.boards.board_dir(victim) / "flash.img", simbuild.build(ctx.workdir),
                             format_all=False, files={f"slot_{slot}/{BACKDOOR}": "print('owned')\n"})
    say(f"  attacker added {BACKDOOR} to {victim}'s slot {slot} (flash written while powered off)")
    ctx.boards.start(victim, model=DEMO_BOARDS[victim], heap=DEMO_HEAP)
    alert = wait_for(lambda: [a for a in fleet_alerts(db) if a.rule == "integrity_violation"
                           and a.device == victim], SCAN_TIMEOUT)
    bad = wait_for(lambda: [q for q in security_db.postures(db, victim) if q["seq"] > last and q["integrity_ok"] == 0],
                10)
    if alert:
        say(f"  ALERT integrity_violation on {victim}: evidence events {alert[0].evidence}, {alert[0].detail}")
    else:
        say(f"  [red]no integrity alert for {victim}[/red]")
    verified = 0
    for name in ctx.names:
        rep = eventchain.verify_device(db, name)
        verified += int(rep.ok and rep.entries > 0)
        say(f"  events verify {name}: {rep.entries} entries, "
            + ("chain verified" if rep.ok else "; ".join(p.detail for p in rep.problems)))
    alerts = fleet_alerts(db)
    by_rule: dict[str, int] = {}
    for a in alerts:
        by_rule[a.rule] = by_rule.get(a.rule, 0) + 1
    sec = ctx.summary.setdefault("security", {})
    sec.update(security_db.counts(db))
    sec.update({
        "chains_verified": verified,
        "integrity_alerts": by_rule.get("integrity_violation", 0),
        "integrity_caught": {"board": victim, "file": BACKDOOR, "alerted": bool(alert),
                             "posture_bad": (bad[0]["report"]["integrity"]["bad"] if bad else None)},
        "alerts": len(alerts),
        "alerts_by_rule": by_rule,
    })
