"""`medsentry telemetry`: export and summarise stored telemetry."""
from __future__ import annotations

import json
from pathlib import Path

import click

from host_tools.collector import FleetDB
from host_tools.collector.export import ExportError, export


def _db(ctx: click.Context) -> FleetDB:
    path = Path(ctx.obj["workdir"]) / "fleet.db"
    if not path.exists():
        raise click.ClickException(f"no fleet database at {path} (run `medsentry collector` first)")
    return FleetDB(path)


@click.group("telemetry")
def cli() -> None:
    """Stored telemetry (fleet.db)."""


@cli.command("export")
@click.argument("device_id")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Default: stdout.")
@click.pass_context
def export_cmd(ctx: click.Context, device_id: str, fmt: str, output: str | None) -> None:
    """Export DEVICE_ID's records ordered by sequence number."""
    try:
        text = export(_db(ctx), device_id, fmt)
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None
    if output:
        Path(output).write_text(text)
    else:
        click.echo(text, nl=False)


@cli.command("stats")
@click.pass_context
def stats(ctx: click.Context) -> None:
    """Counters per device (accepted, rejected by reason, duplicates, lost, update reports)."""
    db = _db(ctx)
    upd = db.update_counts()
    out = {}
    for dev in db.device_ids():
        out[dev] = dict(db.counters(dev), lost=db.lost(dev), update_reports=upd.get(dev, 0))
        last = db.updates(dev)[-1:]
        if last:
            out[dev]["last_update"] = {k: last[0][k] for k in ("step", "version", "reason", "t")}
    out["*"] = dict(db.counters(), lost=db.lost(), update_reports=sum(upd.values()))
    click.echo(json.dumps(out, indent=1, sort_keys=True))
