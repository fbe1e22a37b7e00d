"""Demo stages for sealed telemetry.

stage_fleet (before the boards boot): the fleet PKI (`pki init`, `pki issue` per
    demo board), Mosquitto with the fleet's TLS listener and ACLs on a free
    loopback port, the collector writing ``fleet.db``; hands a provisioning
    function to boards.stage_boot (ctx.shared["provision"]), which writes each
    board's identity over its UART right after power-on (the board then resets
    and streams).
stage_telemetry (after boot): watches sealed vitals stream into the collector
    for ~20 s, then writes ``telemetry`` into the summary: ``sent``, ``stored``,
    ``lost``, ``rejected``, ``duplicates_dropped`` (and per board). The broker and
    the collector keep running for later stages and are stopped by run_demo.
"""
from __future__ import annotations

import time

from rich.console import Group
from rich.live import Live
from rich.table import Table

from host_tools.broker import Broker
from host_tools.collector import Collector, CollectorConfig, FleetDB
from host_tools.demo.context import DEMO_BOARDS, DemoContext
from host_tools.console import store as console_store
from host_tools.pki import FleetPKI
from host_tools.release.quickstart import DemoPassphrases
from host_tools.provision import BrokerAddress, merge_config, provision

STREAM_SECONDS = 20.0
DRAIN_TIMEOUT = 15.0
# posture.on: the security monitor (agent/security), which the demo's 384 KiB boards have room for.
TELEMETRY_CONFIG = {"telemetry": {"period_ms": 1000, "status_every_s": 10}, "posture": {"on": 1}}


def stage_fleet(ctx: DemoContext) -> None:
    pki = FleetPKI(ctx.workdir, DemoPassphrases("medsentry-demo").existing("fleet-ca"))  # demo only
    pki.init()
    for name in ctx.names:
        pki.issue(name, DEMO_BOARDS[name])
    broker = Broker(pki, ctx.workdir / "broker", persistence=True).start()
    ctx.cleanup.append(broker.stop)
    db = FleetDB(ctx.workdir / "fleet.db")
    ctx.cleanup.append(db.close)
    collector = Collector(pki, db, CollectorConfig(host=broker.host, port=broker.port)).start()
    ctx.cleanup.append(collector.stop)
    ctx.shared["telemetry"] = {"pki": pki, "broker": broker, "db": db, "collector": collector}

    def provision_board(name: str, port: str) -> None:
        cfg = merge_config(ctx.shared.get("update_config") or {}, TELEMETRY_CONFIG)
        root = ctx.shared.get("tuf_root")
        provision(pki, name, port, BrokerAddress(broker.host, broker.port), config=cfg,
                  tuf_root=root.read_bytes() if root is not None else None,
                  accounts=lambda model: console_store.for_board(ctx.workdir, name, model))

    ctx.shared["provision"] = provision_board
    ctx.console.print(f"[bold]fleet PKI[/] issued {', '.join(ctx.names)}; broker on {broker.host}:{broker.port} "
                      f"(mutual TLS); collector -> {db.path}")


def _telemetry(ctx: DemoContext, name: str) -> dict:
    return (ctx.boards.status(name).get("device") or {}).get("telemetry") or {}


def _table(ctx: DemoContext) -> Group:
    tel = ctx.shared["telemetry"]
    db: FleetDB = tel["db"]
    t = Table(title="medsentry demo: sealed telemetry (COSE_Encrypt0 / AES-CCM, MQTT QoS 1 over mutual TLS)")
    for col in ("board", "link", "sampled", "acked", "queued", "dropped", "stored", "lost",
                "last seq", "HR", "SpO2", "BP", "temp", "pump"):
        t.add_column(col)
    for name in ctx.names:
        bt = _telemetry(ctx, name)
        rows = db.vitals(name)
        last = rows[-1] if rows else {}
        pump = last.get("pump_state") or "-"
        if last.get("pump_state") == "running":
            pump = f"running {last['pump_rate']:.0f} mL/h"
        t.add_row(name, "up" if bt.get("connected") else "down", str(bt.get("sampled", "-")),
                  str(bt.get("acked", "-")), str(bt.get("queued", "-")), str(bt.get("dropped", "-")),
                  str(len(rows)), str(db.lost(name)), str(last.get("seq", "-")), str(last.get("hr", "-")),
                  str(last.get("spo2", "-")), f"{last.get('bp_sys', '-')}/{last.get('bp_dia', '-')}",
                  str(last.get("temp", "-")), pump)
    stats = tel["collector"].stats
    c = Table(title="collector")
    for k in ("accepted", "duplicate", "replayed", "forged", "malformed", "status_unsealed"):
        c.add_column(k)
    c.add_row(*[str(stats.get(k, 0)) for k in ("accepted", "duplicate", "replayed", "forged", "malformed",
                                               "status_unsealed")])
    return Group(t, c)


def _snapshot_counts(ctx: DemoContext) -> dict:
    """Per board: telemetry records sealed up to now, and how many of those the
    collector stored once the board's queue has drained."""
    tel = ctx.shared["telemetry"]
    db: FleetDB = tel["db"]
    snap = {name: _telemetry(ctx, name) for name in ctx.names}
    deadline = time.monotonic() + DRAIN_TIMEOUT
    per: dict[str, dict] = {}
    while True:
        tel["collector"].flush()
        done = True
        for name, s in snap.items():
            upto = s.get("next_seq", 1)
            with db.lock:
                stored = db.conn.execute("SELECT COUNT(*) FROM vitals WHERE device_id=? AND seq < ?",
                                         (name, upto)).fetchone()[0]
            per[name] = {"sent": s.get("sampled", 0), "stored": int(stored), "lost": db.lost(name),
                         "dropped_on_board": s.get("dropped", 0), "connected": s.get("connected", False)}
            if stored < s.get("sampled", 0):
                done = False
        if done or time.monotonic() > deadline:
            return per
        time.sleep(0.25)


def stage_telemetry(ctx: DemoContext, seconds: float = STREAM_SECONDS) -> None:
    if "telemetry" not in ctx.shared:
        return
    with Live(_table(ctx), console=ctx.console, refresh_per_second=2) as live:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.5)
            live.update(_table(ctx))
        per = _snapshot_counts(ctx)
        live.update(_table(ctx))
    db: FleetDB = ctx.shared["telemetry"]["db"]
    summary = db.summary(sent=sum(p["sent"] for p in per.values()))
    summary["stored"] = sum(p["stored"] for p in per.values())
    summary["boards"] = per
    summary["update_reports"] = sum(db.update_counts().values())
    ctx.summary["telemetry"] = summary
    ctx.console.print(f"[bold]telemetry[/]: sent {summary['sent']}, stored {summary['stored']}, "
                      f"lost {summary['lost']}, rejected {summary['rejected']}, "
                      f"duplicates dropped {summary['duplicates_dropped']}")
