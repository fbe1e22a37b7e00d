"""`medsentry nac`: 802.1X admission (FreeRADIUS, EAP-TLS on the fleet PKI)."""
from __future__ import annotations

import json
import secrets
import signal
import threading
import time
from pathlib import Path

import click

from host_tools.deps import MissingDependency
from host_tools.nac.coa import CoaError, disconnect
from host_tools.nac.policy import PolicyError, clear_quarantine, fleet_decisions, set_quarantine
from host_tools.nac.radius_config import RadiusSettings, write_config
from host_tools.nac.runner import Radius, RadiusError
from host_tools.network.config import NetworkConfigError, load_config
from host_tools.pki import FleetPKI, PkiError
from host_tools.pki.records import check_device_id


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _setup(ctx: click.Context) -> tuple[FleetPKI, object]:
    pki = FleetPKI(ctx.obj["workdir"])
    try:
        pki.require_init()
        cfg = load_config(pki.workdir, [r.model for r in pki.devices()])
    except (PkiError, NetworkConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    return pki, cfg


@click.group("nac")
def cli() -> None:
    """Network access control: who may join which VLAN (RADIUS EAP-TLS)."""


@cli.command("decisions")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def decisions(ctx: click.Context, as_json: bool) -> None:
    """Show each device's admission decision and why (from fleet data)."""
    pki, cfg = _setup(ctx)
    try:
        ds = fleet_decisions(pki, cfg)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps([d.to_json() for d in ds], indent=2))
        return
    for d in ds:
        where = f"vlan {d.segment.vlan} ({d.segment.name})" if d.segment else "-"
        click.echo(f"{d.device_id:20} {d.action:10} {where:24} {'; '.join(d.reasons)}")


@cli.command("config")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output directory [default: <workdir>/nac/raddb].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Listener address.")
@click.option("--port", default=1812, show_default=True, type=int)
@click.option("--client", default="127.0.0.1", show_default=True, help="NAS (switch) address.")
@click.option("--secret-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the NAS shared secret [default: <workdir>/nac/secret, created].")
@click.pass_context
def config(ctx: click.Context, out: str | None, host: str, port: int, client: str,
           secret_file: str | None) -> None:
    """Write a FreeRADIUS config dir (run with: freeradius -X -d <out>)."""
    pki, cfg = _setup(ctx)
    sf = Path(secret_file) if secret_file else pki.workdir / "nac" / "secret"
    if not sf.exists():
        sf.parent.mkdir(parents=True, exist_ok=True)
        sf.write_text(secrets.token_hex(16) + "\n")
        sf.chmod(0o600)
    try:
        secret = sf.read_text().strip()
        settings = RadiusSettings(host=host, port=port, client=client, secret=secret,
                                  run_as_root=False)
        out_dir = write_config(pki, fleet_decisions(pki, cfg), settings,
                               Path(out) if out else pki.workdir / "nac" / "raddb")
    except (OSError, ValueError, PolicyError, PkiError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {out_dir} (shared secret in {sf}); run: freeradius -X -d {out_dir}")
    click.echo("note: FreeRADIUS drops to user `freerad`: make the server key readable to it "
               "(`nac run` keeps root for a local test setup).")


@cli.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="UDP port to listen on [default: a free port].")
@click.option("--duration", type=float, default=None, help="Stop after N seconds [default: run until Ctrl-C].")
@click.option("--refresh", type=float, default=10.0, show_default=True,
              help="Re-read fleet data every N seconds; restart when a decision changed.")
@click.option("--secret-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="NAS shared secret [default: a new random one, written to <workdir>/nac/run/secret].")
@click.option("--coa", "coa_to", default=None, metavar="HOST:PORT",
              help="Switch's RFC 5176 port: send a Disconnect-Request when a device's decision changes.")
@click.pass_context
def run(ctx: click.Context, host: str, port: int | None, duration: float | None,
        refresh: float, secret_file: str | None, coa_to: str | None) -> None:
    """Run FreeRADIUS on a loopback port; writes <workdir>/nac/address.json."""
    pki, cfg = _setup(ctx)
    nas = _hostport(coa_to) if coa_to else None
    secret_text = Path(secret_file).read_text().strip() if secret_file else None
    radius = Radius(pki, cfg, pki.workdir / "nac" / "run", host=host, port=port, secret=secret_text)
    try:
        radius.start()
    except (RadiusError, MissingDependency, PolicyError, PkiError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    addr = pki.workdir / "nac" / "address.json"
    addr.write_text(json.dumps({"host": radius.host, "port": radius.port}) + "\n")
    addr.chmod(0o600)
    secret = pki.workdir / "nac" / "run" / "secret"
    secret.write_text(radius.secret + "\n")
    secret.chmod(0o600)
    click.echo(f"radius listening on {radius.host}:{radius.port}/udp (secret in {secret}, "
               f"log {radius.log_path}); Ctrl-C stops")
    try:
        deadline = None if duration is None else time.monotonic() + duration
        next_check = time.monotonic() + refresh
        while radius.running and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + refresh
                old = {d.device_id: d.to_json() for d in radius.decisions}
                try:
                    new = {d.device_id: d.to_json() for d in fleet_decisions(pki, cfg)}
                    if new != old:
                        click.echo("fleet data changed: reloading decisions")
                        radius.refresh()  # reads the fleet data before it stops anything
                except PolicyError as exc:
                    # The fleet store is away (a database restart, a bad URL): the
                    # devices keep the decisions already made, and we say so at
                    # every check. Stopping RADIUS would take every device off the
                    # network instead.
                    click.echo(f"warning: fleet data unreadable, keeping the current decisions: {exc}",
                               err=True)
                    continue
                if new != old and nas is not None:
                    for dev in sorted(k for k in new.keys() | old.keys() if new.get(k) != old.get(k)):
                        _send_disconnect(nas, radius.secret, dev)
        if not radius.running:
            raise click.ClickException(f"freeradius stopped:\n{radius.log_text()[-2000:]}")
    except KeyboardInterrupt:
        pass
    except (RadiusError, PolicyError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        radius.stop()
        addr.unlink(missing_ok=True)


def _hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def _send_disconnect(nas: tuple[str, int], secret: str, device_id: str) -> None:
    try:
        acked = disconnect(nas[0], nas[1], secret, device_id)
        click.echo(f"{device_id}: Disconnect-{'ACK' if acked else 'NAK'} from {nas[0]}:{nas[1]}")
    except (CoaError, OSError) as exc:
        click.echo(f"{device_id}: CoA failed: {exc}", err=True)


@cli.command("coa")
@click.argument("device_id")
@click.option("--nas", required=True, metavar="HOST:PORT", help="The switch's RFC 5176 port.")
@click.option("--secret-file", type=click.Path(dir_okay=False, exists=True), required=True)
def coa(device_id: str, nas: str, secret_file: str) -> None:
    """Ask the switch to drop DEVICE's session now, so it re-authenticates (RFC 5176)."""
    try:
        acked = disconnect(*_hostport(nas), Path(secret_file).read_text().strip(), check_device_id(device_id))
    except (CoaError, OSError, PkiError) as exc:
        raise click.ClickException(str(exc)) from None
    if not acked:
        raise click.ClickException(f"{device_id}: the switch answered Disconnect-NAK")
    click.echo(f"{device_id}: Disconnect-ACK")


@cli.command("quarantine")
@click.argument("device_id")
@click.option("--reason", required=True, help="Why (shown in decisions and the RADIUS config).")
@click.pass_context
def quarantine(ctx: click.Context, device_id: str, reason: str) -> None:
    """Send a device to the quarantine VLAN at its next admission."""
    pki, _cfg = _setup(ctx)
    try:
        pki.device(check_device_id(device_id))
        set_quarantine(pki.workdir / "fleet.db", device_id, reason.strip() or "operator")
    except (PkiError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{device_id}: quarantined at next admission")


@cli.command("release")
@click.argument("device_id")
@click.pass_context
def release(ctx: click.Context, device_id: str) -> None:
    """Withdraw a quarantine command (other findings still apply)."""
    pki, _cfg = _setup(ctx)
    try:
        found = clear_quarantine(pki.workdir / "fleet.db", check_device_id(device_id))
    except (PkiError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{device_id}: " + ("quarantine command withdrawn" if found else "no quarantine command"))
