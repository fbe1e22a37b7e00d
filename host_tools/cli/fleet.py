"""`medsentry fleet`: the operator's view of the fleet (from fleet.db and the PKI)."""
from __future__ import annotations

import json

import click

from host_tools.collector.dbconn import DatabaseURLError
from host_tools.fleet import ReaderError, fleet_status
from host_tools.fleet.text import status_text


@click.group("fleet")
def cli() -> None:
    """Fleet inventory and rollout progress."""


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Per device: model, firmware, slot, link, update step, rollback, cert, security; per release: counts."""
    try:
        doc = fleet_status(ctx.obj["workdir"])
    except (ReaderError, DatabaseURLError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(doc, indent=1, sort_keys=True) if as_json else status_text(doc), nl=as_json)
