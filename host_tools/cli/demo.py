"""`medsentry demo`: the main job, end to end on simulated boards."""
from __future__ import annotations

from pathlib import Path

import click

from host_tools.demo import run_demo


@click.command("demo")
@click.option("--out", default="demo-out", show_default=True, type=click.Path(file_okay=False))
def cli(out: str) -> None:
    """Boot simulated boards, show them live and write OUT/summary.json."""
    summary = run_demo(Path(out))
    click.echo(f"summary written to {Path(out) / 'summary.json'} ({len(summary.get('boards', {}))} boards)")
