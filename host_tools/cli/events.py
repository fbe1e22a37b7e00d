"""`medsentry events`: the devices' tamper-evident security event logs."""
from __future__ import annotations

import json

import click

from host_tools.cli.telemetry import _db
from host_tools.collector import eventchain, security_db


@click.group("events")
def cli() -> None:
    """Security events received from the devices (fleet.db)."""


@cli.command("verify")
@click.argument("device_id")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def verify_cmd(ctx: click.Context, device_id: str, as_json: bool) -> None:
    """Check DEVICE_ID's event chain against what was received and the posture heads.

    Exit status 1 when any gap, edit, fork, reorder or truncation is found."""
    db = _db(ctx)
    if device_id not in db.device_ids():
        raise click.ClickException(f"unknown device {device_id!r}")
    rep = eventchain.verify_device(db, device_id)
    if as_json:
        click.echo(json.dumps(dict(rep.as_dict(), device=device_id), indent=1))
    else:
        click.echo(f"{device_id}: {rep.entries} entries ({rep.first}..{rep.last}), posture head {rep.head}: "
                   + ("chain verified" if rep.ok else f"{len(rep.problems)} problem(s)"))
        for p in rep.problems:
            click.echo(f"  {p.kind} at {p.n}: {p.detail}")
    if not rep.ok:
        ctx.exit(1)


@cli.command("list")
@click.argument("device_id")
@click.pass_context
def list_cmd(ctx: click.Context, device_id: str) -> None:
    """DEVICE_ID's received events, one JSON object a line."""
    for r in security_db.events(_db(ctx), device_id):
        click.echo(json.dumps({k: r[k] for k in ("n", "t", "kind", "severity", "detail", "seq")}))
