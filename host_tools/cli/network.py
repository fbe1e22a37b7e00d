"""`medsentry network`: the segment plan (network.json) and the generated firewall."""
from __future__ import annotations

import os
from pathlib import Path

import click

from host_tools.network.config import NetworkConfigError, default_config, load_config, save_config
from host_tools.network.nftables import render_nftables
from host_tools.pki import FleetPKI, PkiError
from host_tools.release.inputs import InputError, check_output, write_error


def _models(pki: FleetPKI) -> list[str]:
    try:
        pki.require_init()
        return [r.model for r in pki.devices()]
    except PkiError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("network")
def cli() -> None:
    """Segmentation: VLANs per device model, quarantine, generated firewall policy."""


@cli.command("init")
@click.option("--force", is_flag=True, help="Overwrite an existing network.json.")
@click.pass_context
def init(ctx: click.Context, force: bool) -> None:
    """Write <workdir>/network.json with one segment per known model (edit it, then keep it)."""
    pki = FleetPKI(ctx.obj["workdir"])
    path = pki.workdir / "network.json"
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists (use --force to replace it)")
    try:
        cfg = default_config(_models(pki))
        click.echo(f"wrote {save_config(pki.workdir, cfg)}")
    except (NetworkConfigError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


@cli.command("policy")
@click.option("--format", "fmt", type=click.Choice(["nftables"]), default="nftables", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="File to write [default: stdout].")
@click.pass_context
def policy(ctx: click.Context, fmt: str, out: str | None) -> None:
    """Print (or write) the router ruleset generated from network.json."""
    pki = FleetPKI(ctx.obj["workdir"])
    try:
        text = render_nftables(load_config(pki.workdir, _models(pki)))
    except NetworkConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if out is None:
        click.echo(text, nl=False)
        return
    path = Path(out)
    try:
        if path.exists() and not path.is_file():
            raise InputError(f"cannot write {out}: not a regular file")
        check_output(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except InputError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(str(write_error(path, exc))) from None
    click.echo(f"wrote {out}")
