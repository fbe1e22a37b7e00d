"""`medsentry pki`: fleet CA, broker/collector certificates, device identities, CRL."""
from __future__ import annotations

import json
import os

import click
from cryptography import x509
from rich.console import Console
from rich.table import Table

from host_tools.pki import DEFAULT_DEVICE_DAYS, DEFAULT_SERVER_HOSTS, FleetPKI, PkiError
from host_tools.pki.records import service_role


def _pki(ctx: click.Context, new: bool = False) -> FleetPKI:
    """The PKI; the CA passphrase comes from MEDSENTRY_KEY_PASSPHRASE_FLEET_CA or
    is asked for when the CA key is needed (a new one: policy-checked, twice)."""
    from host_tools.cli.keys import ask_new_passphrase
    from host_tools.pki.ca_key import CA_PASSPHRASE_ENV

    if os.environ.get(CA_PASSPHRASE_ENV) is not None:
        return FleetPKI(ctx.obj["workdir"])
    if new:
        return FleetPKI(ctx.obj["workdir"], lambda: ask_new_passphrase("Passphrase for the fleet CA key"))
    return FleetPKI(ctx.obj["workdir"], lambda: click.prompt("Passphrase for the fleet CA key", hide_input=True))


def _run(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except PkiError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("pki")
def cli() -> None:
    """Fleet PKI: CA, broker and client certificates, device identities, revocation."""


@cli.command("init")
@click.option("--host", "hosts", multiple=True, default=DEFAULT_SERVER_HOSTS, show_default=True,
              help="IP or DNS name for the broker certificate (repeatable).")
@click.option("--ca-days", default=3650, show_default=True, type=float)
@click.option("--days", default=825, show_default=True, type=float,
              help="Validity of the broker, collector and operator certificates.")
@click.option("--crl-days", default=30, show_default=True, type=float)
@click.option("--force", is_flag=True, help="Replace an existing CA (invalidates every certificate).")
@click.pass_context
def init(ctx: click.Context, hosts: tuple[str, ...], ca_days: float, days: float, crl_days: float,
         force: bool) -> None:
    """Create the fleet CA (ECDSA P-256), broker server cert, collector/operator certs, CRL.

    The CA key is encrypted with a passphrase (MEDSENTRY_KEY_PASSPHRASE_FLEET_CA or asked for)."""
    pki = _pki(ctx, new=True)
    _run(pki.init, server_hosts=list(hosts), ca_days=ca_days, service_days=days,
         crl_days=crl_days, force=force)
    click.echo(f"fleet CA: {pki.ca_cert_path}")
    click.echo(f"broker certificate for {', '.join(hosts)}: {pki.server_cert_path}")
    click.echo(f"identities: collector, operator under {pki.root / 'clients'}")
    click.echo(f"CRL: {pki.crl_pem_path}")


@cli.command("issue")
@click.argument("device_id")
@click.option("--model", required=True, help="Device model, e.g. pump-v2.")
@click.option("--days", type=float, default=None, help=f"Validity in days [default: {DEFAULT_DEVICE_DAYS}].")
@click.option("--not-after", default=None,
              help="Explicit expiry (ISO 8601, UTC if no zone); a past date gives an expired cert.")
@click.option("--renew", is_flag=True, help="Re-issue the certificate of an existing device.")
@click.pass_context
def issue(ctx: click.Context, device_id: str, model: str, days: float | None, not_after: str | None,
          renew: bool) -> None:
    """Issue a device key + certificate (CN = DEVICE_ID) and a telemetry key."""
    pki = _pki(ctx)
    rec = _run(pki.issue, device_id, model, days=days, not_after=not_after, renew=renew)
    ident = pki.device_identity(device_id)
    click.echo(f"device {rec.device_id} ({rec.model}) serial {rec.serial}, valid until {rec.not_after}")
    click.echo(f"  certificate {ident.cert}\n  key {ident.key}\n  record {pki.record_path(device_id)}")
    click.echo(f"  telemetry key id {rec.active_key().kid.hex()}")


@cli.command("issue-service")
@click.argument("name")
@click.option("--days", type=float, default=None, help="Validity in days [default: 825].")
@click.pass_context
def issue_service(ctx: click.Context, name: str, days: float | None) -> None:
    """Issue a service identity: one more collector instance (collector-NAME) or re-issue
    collector/operator (the old certificate goes on the CRL). Restart the broker
    afterwards so its ACL includes it and it reads the CRL."""
    pki = _pki(ctx)
    if service_role(name) is None:
        raise click.ClickException(f"{name!r} is not a service name (collector, operator, collector-<x>)")
    existed = pki.client_identity(name).cert.exists()
    ident = _run(pki.issue_client, name, days=days)
    click.echo(f"{name}: {ident.cert}" + ("; the previous certificate is revoked (restart the broker)"
                                          if existed else ""))


@cli.command("rekey")
@click.option("--new-passphrase", is_flag=True, help="Also change the CA passphrase (asked for).")
@click.pass_context
def rekey(ctx: click.Context, new_passphrase: bool) -> None:
    """Re-encrypt the fleet CA key with today's KDF (encrypts an old unencrypted one)."""
    from host_tools.cli.keys import ask_new_passphrase

    pki = _pki(ctx)
    fresh = (lambda: ask_new_passphrase("New passphrase for the fleet CA key")) if new_passphrase else None
    old, new = _run(pki.rekey_ca, fresh)
    click.echo(f"fleet CA key: {old} -> {new}")


@cli.command("revoke")
@click.argument("device_id")
@click.pass_context
def revoke(ctx: click.Context, device_id: str) -> None:
    """Revoke a device: CRL updated (restart the broker to apply), telemetry keys retired."""
    pki = _pki(ctx)
    rec = _run(pki.revoke, device_id)
    click.echo(f"revoked {device_id} (serial {rec.serial}); CRL {pki.crl_pem_path} / {pki.crl_der_path}")
    click.echo("restart the broker (`medsentry broker run` / Broker.restart()) so it reloads the CRL")


@cli.command("crl")
@click.option("--days", default=30, show_default=True, type=float)
@click.pass_context
def crl(ctx: click.Context, days: float) -> None:
    """Re-sign the CRL (do it before it expires: the broker then refuses everyone)."""
    pki = _pki(ctx)
    c = _run(pki.refresh_crl, days=days)
    number = c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    click.echo(f"CRL #{number} with {len(list(c))} revoked, next update {c.next_update_utc.isoformat()}")


@cli.command("rotate-key")
@click.argument("device_id")
@click.pass_context
def rotate_key(ctx: click.Context, device_id: str) -> None:
    """Add a new telemetry key; older keys stay valid until retired."""
    tk = _run(_pki(ctx).rotate_key, device_id)
    click.echo(f"device {device_id}: new telemetry key id {tk.kid.hex()}")


@cli.command("retire-key")
@click.argument("device_id")
@click.argument("kid")
@click.pass_context
def retire_key(ctx: click.Context, device_id: str, kid: str) -> None:
    """Retire telemetry key KID (hex): records sealed with it are rejected."""
    tk = _run(_pki(ctx).retire_key, device_id, kid)
    click.echo(f"device {device_id}: key {tk.kid.hex()} retired at {tk.retired}")


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (no key material).")
@click.pass_context
def list_devices(ctx: click.Context, as_json: bool) -> None:
    """Devices with model, expiry, revocation and telemetry keys."""
    pki = _pki(ctx)
    if as_json:
        click.echo(json.dumps([{
            "device_id": r.device_id, "model": r.model, "serial": r.serial, "not_before": r.not_before,
            "not_after": r.not_after, "revoked": r.revoked,
            "telemetry_keys": [{"kid": k.kid.hex(), "active": k.active, "created": k.created, "retired": k.retired}
                               for k in r.telemetry_keys]} for r in _run(pki.devices)], indent=1))
        return
    t = Table("device", "model", "serial", "not after", "revoked", "telemetry keys (active*)")
    for rec in _run(pki.devices):
        keys = " ".join(tk.kid.hex() + ("*" if tk.active else "") for tk in rec.telemetry_keys)
        t.add_row(rec.device_id, rec.model, rec.serial[:12], rec.not_after, rec.revoked or "", keys)
    Console().print(t)
