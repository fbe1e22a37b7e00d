"""Runs the demo stages in order and writes demo-out/summary.json."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable

from rich.console import Console

from host_tools.demo import boards, commands, console, fleetview, network, rollout, security, telemetry, updates
from host_tools.demo.context import DEMO_BOARDS, DemoContext
from host_tools.sim.boards import Boards


def stages() -> list[Callable[[DemoContext], None]]:
    return [updates.stage_release_server, telemetry.stage_fleet, console.stage_accounts, boards.stage_boot,
            console.stage_console, telemetry.stage_telemetry, updates.stage_updates, commands.stage_commands,
            security.stage_security, network.stage_network, rollout.stage_rollouts, fleetview.stage_operator]


def run_demo(out: Path = Path("demo-out"), console: Console | None = None) -> dict:
    out = Path(out)
    workdir = out / "work"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    ctx = DemoContext(out=out, workdir=workdir, boards=Boards(workdir), names=list(DEMO_BOARDS),
                      console=console or Console(width=max(Console().width, 150)))
    started = time.time()
    try:
        for stage in stages():
            stage(ctx)
    finally:
        for name in ctx.names:
            if ctx.boards.is_running(name):
                ctx.boards.stop(name)
        for stop in reversed(ctx.cleanup):
            stop()
    ctx.summary["duration_s"] = round(time.time() - started, 1)
    (out / "summary.json").write_text(json.dumps(ctx.summary, indent=2))
    return ctx.summary
