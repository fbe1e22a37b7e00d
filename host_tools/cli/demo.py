"""`medsentry demo`: the main job, end to end on simulated boards."""
from __future__ import annotations

from pathlib import Path

import click

from host_tools.demo import run_demo
from host_tools.sim.boards import BoardError


@click.command("demo")
@click.option("--out", default="demo-out", show_default=True, type=click.Path(file_okay=False))
def cli(out: str) -> None:
    """Boot simulated boards, show them live and write OUT/summary.json."""
    try:
        summary = run_demo(Path(out))
    except (RuntimeError, OSError, BoardError) as exc:
        # A stage that fails says which and why in one line; the boards' own
        # logs tell the rest.
        raise click.ClickException(f"demo failed: {exc} (each board's log: "
                                   f"{Path(out) / 'work' / 'boards' / '<board>' / 'console.log'})") from None
    click.echo(f"summary written to {Path(out) / 'summary.json'} ({len(summary.get('boards', {}))} boards)")
