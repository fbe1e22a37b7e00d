"""`medsentry command send|list`: signed commands to devices."""
from __future__ import annotations

import json

import click

from host_tools.cli.collector import broker_address
from host_tools.cli.keys import CliPassphrases, ReleaseGroup, no_prompt_option, workdir
from host_tools.collector.dbconn import fleet_db
from host_tools.ops.envelope import CommandInputError
from host_tools.ops.keys import OpsKeyring, key_name


class CommandGroup(ReleaseGroup):
    errors = ReleaseGroup.errors + (CommandInputError,)


@click.group(cls=CommandGroup, name="command")
def cli() -> None:
    """Send signed commands; list them with the devices' results."""


@cli.command("send")
@click.argument("device")
@click.argument("command")
@click.argument("args", nargs=-1)
@click.option("--as", "operator", required=True, help="Operator name (its key signs).")
@click.option("--validity", default=300, show_default=True, help="Seconds the command stays valid (max 600).")
@click.option("--wait", is_flag=True, help="Wait for the device's result (needs the collector running).")
@click.option("--timeout", default=60.0, show_default=True)
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
@no_prompt_option
@click.pass_context
def send_cmd(ctx: click.Context, device: str, command: str, args: tuple[str, ...], operator: str, validity: int,
             wait: bool, timeout: float, host: str | None, port: int | None, no_prompt: bool) -> None:
    """Sign COMMAND [ARGS] for DEVICE and publish it on medsentry/DEVICE/cmd."""
    from host_tools.ops import commands

    wd = workdir(ctx)
    ring = OpsKeyring(wd)
    ring.get(operator)
    h, p = broker_address(wd, host, port)
    sent = commands.sign(ring, operator, CliPassphrases(not no_prompt).existing(key_name(operator)),
                         device, command, list(args), validity)
    commands.publish(wd, h, p, device, sent.envelope)
    commands.record(ring, sent)
    click.echo(f"sent {command} {' '.join(map(str, sent.args))} to {device} as {operator} (counter {sent.ctr})")
    if wait:
        r = commands.wait_result(fleet_db(wd), device, sent.ctr, timeout)
        if r is None:
            raise click.ClickException(f"no result from {device} within {timeout:.0f} s")
        click.echo(f"{device}: {r['result']}" + (f" ({r['reason']})" if r["reason"] else ""))
        if r["result"] != "done":
            ctx.exit(1)


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """Commands sent from this work directory and their results."""
    from host_tools.ops import commands

    wd = workdir(ctx)
    sent = commands.listing(OpsKeyring(wd), fleet_db(wd))
    if as_json:
        click.echo(json.dumps(list(sent), indent=1, default=str))
        return
    for s in sent:
        args = " ".join(map(str, s["args"]))
        why = f" ({s['reason']})" if s.get("reason") else ""
        click.echo(f"{s['device']:12} {s['cmd']} {args:10} by {s['operator']:10} ctr {s['ctr']}: {s['result']}{why}")
