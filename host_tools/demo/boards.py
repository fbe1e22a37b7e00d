"""Demo stage: boot the boards and watch them live."""
from __future__ import annotations

import time

from rich.live import Live
from rich.table import Table

from host_tools.demo.context import DEMO_BOARDS, DemoContext

# Provisioned boards run the telemetry pipeline beside the update agent and its
# TUF client: ~190 KB of .mpy code on the heap, a TUF refresh beside a live TLS
# session needs ~300 KiB (measured), so the demo boards get a 384 KiB heap.
DEMO_HEAP = "384k"


def board_table(ctx: DemoContext, title: str) -> Table:
    t = Table(title=title)
    for col in ("board", "model", "fw", "state", "slot", "reset", "uptime", "heap free", "HR", "SpO2", "BP", "temp", "pump"):
        t.add_column(col)
    for name in ctx.names:
        st = ctx.boards.status(name)
        dev = st.get("device") or {}
        v = dev.get("vitals") or {}
        p = dev.get("pump") or {}
        pump = p.get("state", "-")
        if p.get("state") == "infusing":
            pump = f"infusing {p['rate']:.0f} mL/h, {p['infused']:.2f}/{p['vtbi']:.0f} mL"
        t.add_row(
            name, str(dev.get("model", "-")), str(dev.get("version", "-")), st.get("state", "?"), str(dev.get("slot", "-")),
            str(st.get("last_reset_reason") or "-"), f"{dev.get('uptime_s', '-')} s",
            str(dev.get("heap_free", "-")), str(v.get("hr", "-")), str(v.get("spo2", "-")),
            f"{v.get('bp_sys', '-')}/{v.get('bp_dia', '-')}", str(v.get("temp", "-")), pump,
        )
    return t


def stage_boot(ctx: DemoContext, seconds: float = 8.0) -> None:
    """Boot the boards (provisioning each right after power-on when an earlier
    stage set ctx.shared["provision"]), start an infusion on the first pump,
    watch them live."""
    provision = ctx.shared.get("provision")
    for name in ctx.names:
        st = ctx.boards.start(name, model=DEMO_BOARDS[name], heap=DEMO_HEAP)
        if provision is not None:
            provision(name, st["port"])
    ctx.boards.start_infusion(ctx.names[0], rate_ml_h=120.0, vtbi_ml=50.0)
    with Live(board_table(ctx, "medsentry demo: simulated boards"), console=ctx.console, refresh_per_second=4) as live:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.25)
            live.update(board_table(ctx, "medsentry demo: simulated boards"))
    boards = {}
    for name in ctx.names:
        st = ctx.boards.status(name)
        dev = st.get("device") or {}
        boards[name] = {
            "state": st.get("state"),
            "boots": st.get("boots"),
            "reset_reason": st.get("last_reset_reason"),
            "slot": dev.get("slot"),
            "model": dev.get("model"),
            "version": dev.get("version"),
            "uptime_s": dev.get("uptime_s"),
            "heap_free": dev.get("heap_free"),
            "heap_cap": st.get("heap"),
            "flash_size": st.get("flash_size"),
            "vitals": dev.get("vitals"),
            "pump": dev.get("pump"),
        }
    ctx.summary["boards"] = boards


