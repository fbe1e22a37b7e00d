"""`medsentry device`: factory operations on a physical (or simulated) board."""
from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from host_tools.console import store as console_store
from host_tools.network.config import NetworkConfigError
from host_tools.network.egress import services_from_workdir
from host_tools.pki import FleetPKI
from host_tools.provision import (
    BrokerAddress,
    ProvisionError,
    broker_from_workdir,
    load_config_file,
    provision,
)
from host_tools.provision.updates import update_settings
from host_tools.release.inputs import InputError, read_regular

SMALL_FILE = 1024 * 1024  # a provisioning config or a TUF root is a few KiB


@click.group("device")
def cli() -> None:
    """Factory operations on a board over its UART."""


@cli.command("provision")
@click.argument("name")
@click.option("--port", required=True, help="The board's serial port (e.g. /dev/pts/N from `sim start`).")
@click.option("--broker-host", default=None, help="Broker address [default: from `broker run`].")
@click.option("--broker-port", type=int, default=None)
@click.option("--server-hostname", default=None,
              help="Name the broker certificate must carry [default: the broker host].")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON merged into the board's /state/config.json (update agent, telemetry).")
@click.option("--update-url", default=None, metavar="URL",
              help="Update server (TUF metadata/ and targets/ below it) [default: the running "
                   "`repo serve` of this work dir].")
@click.option("--tuf-root", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Trusted TUF root.json, written to /state/tuf/root.json [default: this work dir's "
                   "repository, its newest N.root.json].")
@click.option("--update-ca", type=click.Path(dir_okay=False), default=None,
              help="PEM certificate (or its CA) of an HTTPS update server [default: the certificate of the "
                   "running `repo serve --tls` when it serves the update URL].")
@click.option("--from-network", is_flag=True,
              help="Broker and update server from <workdir>/network.json (the addresses the generated "
                   "firewall policy allows), so the board's egress allow-list matches it.")
@click.option("--no-reset", is_flag=True, help="Leave the board in its REPL instead of resetting it.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for the board.")
@click.pass_context
def provision_cmd(ctx: click.Context, name: str, port: str, broker_host: str | None, broker_port: int | None,
                  server_hostname: str | None, config_file: str | None, update_url: str | None,
                  tuf_root: str | None, update_ca: str | None, from_network: bool, no_reset: bool, timeout: float) -> None:
    """Write device NAME's identity (issued by `pki issue`) into the board on PORT.

    Factory mode only: the board's console is locked afterwards (no raw REPL),
    and a locked board is refused."""
    workdir = ctx.obj["workdir"]
    if from_network:
        if broker_host or broker_port is not None or update_url:
            raise click.UsageError("--from-network takes broker and update server from network.json: "
                                   "drop --broker-host/--broker-port/--update-url")
        try:
            (broker_host, broker_port), update_url = services_from_workdir(workdir)
        except NetworkConfigError as exc:
            raise click.ClickException(str(exc)) from None
    if broker_port is None:
        rec = broker_from_workdir(workdir)
        if rec is None:
            raise click.ClickException(
                f"no --broker-port given and no broker recorded in {Path(workdir) / 'broker' / 'address.json'} "
                "(start one with `medsentry broker run`)")
        # a cluster's other nodes go along unless --broker-host names another host
        broker = BrokerAddress(broker_host or rec.host, rec.port, server_hostname,
                               rec.endpoints if broker_host is None else ())
    else:
        broker = BrokerAddress(broker_host or "127.0.0.1", broker_port, server_hostname)
    try:
        config = load_config_file(read_regular(Path(config_file), SMALL_FILE, "config"), config_file) \
            if config_file else None
        upd = update_settings(workdir, update_url, tuf_root, config, update_ca)
        console = Console(stderr=True)
        if upd.off:
            console.print(f"[bold yellow]updates will be OFF on this board[/]: {upd.off}")
        res = provision(FleetPKI(workdir), name, port, broker, config=upd.config or None, tuf_root=upd.tuf_root,
                        update_ca=upd.ca, reset=not no_reset, timeout=timeout, log=lambda m: console.print(f"  {m}"),
                        accounts=lambda model: console_store.for_board(workdir, name, model))
    except (ProvisionError, InputError, console_store.ConsoleError) as exc:
        raise click.ClickException(str(exc)) from None
    t = Table(title=f"{res.device_id} ({res.model}) provisioned on {res.port}")
    t.add_column("file on the board")
    t.add_column("sha256 (verified on the board)")
    for path, digest in res.written.items():
        t.add_row(path, digest)
    Console().print(t)
    nodes = f"; cluster nodes {', '.join(f'{h}:{p}' for h, p in broker.endpoints)}" if broker.endpoints else ""
    click.echo(f"broker {broker.host}:{broker.port} (TLS name {broker.tls_name}){nodes}; raw REPL locked"
               + ("; board reset" if res.reset else ""))
    if upd.off:
        click.echo(f"updates: OFF ({upd.off})")
    else:
        click.echo(f"updates: on, {upd.url} (from {upd.url_from}), TUF root {upd.root_from}")
