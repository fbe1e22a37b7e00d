"""`medsentry alerts`: fleet-side alerts from posture reports and security events."""
from __future__ import annotations

import json

import click

from host_tools.cli.telemetry import _db
from host_tools.collector.alerts import fleet_alerts


@click.command("alerts")
@click.option("--json", "as_json", is_flag=True, help="Print the alerts as a JSON array.")
@click.pass_context
def cli(ctx: click.Context, as_json: bool) -> None:
    """List alerts: device, rule, evidence (event sequence numbers) and time."""
    alerts = [a.as_dict() for a in fleet_alerts(_db(ctx))]
    if as_json:
        click.echo(json.dumps(alerts, indent=1))
        return
    if not alerts:
        click.echo("no alerts")
    for a in alerts:
        ev = ",".join(str(n) for n in a["evidence"])
        click.echo(f"{a['time_iso']}  {a['device']:<20} {a['rule']:<20} {a['evidence_kind']} {ev}  {a['detail']}")
