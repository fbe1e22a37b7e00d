"""`medsentry telemetry`: export and summarise stored telemetry."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import click

from host_tools.collector import FleetDB
from host_tools.collector.dbconn import DatabaseURLError, fleet_db, is_pg_error, store_missing
from host_tools.collector.export import ExportError, export


def _db(ctx: click.Context) -> FleetDB:
    """The work directory's fleet store (``dbconn.fleet_db``: SQLite or PostgreSQL)."""
    try:
        location = fleet_db(ctx.obj["workdir"])
        missing = store_missing(location)
        if missing:
            raise click.ClickException(missing)
        return FleetDB(location)
    except DatabaseURLError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - psycopg's errors (refused, auth) end in a message
        if not is_pg_error(exc):
            raise
        raise click.ClickException(f"fleet store: {type(exc).__name__}: {exc}") from None


@click.group("telemetry")
def cli() -> None:
    """Stored telemetry (the fleet store: fleet.db, or the collector's --db)."""


def _when(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """ISO 8601 (``2026-12-02T12:00:00Z``; no zone = UTC) -> Unix seconds."""
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time (e.g. 2026-12-02T12:00:00Z)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


@cli.command("export")
@click.argument("device_ids", nargs=-1)
@click.option("--all", "all_devices", is_flag=True, help="Every device in the database.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--since", callback=_when, default=None, help="Board time, ISO 8601 (UTC if no zone).")
@click.option("--until", callback=_when, default=None, help="Board time, ISO 8601 (UTC if no zone).")
@click.option("--raw", is_flag=True, help="CSV with the database columns (epoch seconds, no units).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="File to write [default: stdout].")
@click.pass_context
def export_cmd(ctx: click.Context, device_ids: tuple[str, ...], all_devices: bool, fmt: str,
               since: float | None, until: float | None, raw: bool, output: str | None) -> None:
    """Export the records of DEVICE_IDS (or --all): ISO 8601 UTC times, units in the
    column names, one line per record ordered by sequence number, gaps marked."""
    db = _db(ctx)
    devices = list(device_ids) or (db.device_ids() if all_devices else [])
    if not devices:
        raise click.UsageError("name one or more devices, or --all")
    try:
        text = export(db, devices, fmt, since=since, until=until, raw=raw)
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None
    if output:
        Path(output).write_text(text)
    else:
        click.echo(text, nl=False)


@cli.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
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
    if as_json:
        click.echo(json.dumps(out, indent=1, sort_keys=True))
        return
    from host_tools.fleet.text import table

    cols = sorted({k for v in out.values() for k in v if k != "last_update"})
    rows = [[dev if dev != "*" else "(all)", *[v.get(c, 0) for c in cols],
             " ".join(str(x) for x in (v.get("last_update") or {}).values() if x is not None) or None]
            for dev, v in out.items()]
    click.echo(table(["device", *cols, "last update (step version reason t)"], rows), nl=False)
