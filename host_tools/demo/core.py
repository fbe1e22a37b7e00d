"""Runs the demo stages in order and writes demo-out/summary.json."""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rich.console import Console

from host_tools.sim.boards import Boards

# board name -> device model
DEMO_BOARDS = {"pump-1": "pump-v2", "pump-2": "pump-v2", "monitor-1": "monitor-v1"}


@dataclass
class DemoContext:
    out: Path
    workdir: Path
    boards: Boards
    names: list[str]
    console: Console
    summary: dict = field(default_factory=dict)
    # What one stage hands to a later one (e.g. the update server URL and the
    # TUF root that provisioning writes into each board).
    shared: dict = field(default_factory=dict)
    # Stop actions registered by stages (servers, brokers), run at the end.
    cleanup: list[Callable[[], None]] = field(default_factory=list)


def stages() -> list[Callable[["DemoContext"], None]]:
    from host_tools.demo import boards, telemetry, updates

    return [updates.stage_release_server, telemetry.stage_fleet, boards.stage_boot, telemetry.stage_telemetry,
            updates.stage_updates]


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
