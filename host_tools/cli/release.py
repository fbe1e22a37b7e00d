"""`medsentry release`: publish, list and recall releases in the TUF repository."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from host_tools.cli.keys import ReleaseGroup, no_prompt_option, passphrases, workdir


@click.group(cls=ReleaseGroup, name="release")
def cli() -> None:
    """Releases: signed package targets of each model's role."""


@cli.command("publish")
@click.argument("package", type=click.Path(dir_okay=False))
@click.option("--channel", type=click.Choice(["stable", "canary"]), default="stable", show_default=True)
@click.option("--urgent", is_flag=True, help="Security patch: devices may install it outside their maintenance window.")
@click.option("--held", is_flag=True, help="Offer it to no device until `release rollout` opens a stage.")
@no_prompt_option
@click.pass_context
def publish_cmd(ctx, package, channel, urgent, held, no_prompt) -> None:
    """Verify PACKAGE and publish it for its model (new snapshot and timestamp)."""
    from host_tools.release.publish import publish_package
    from host_tools.release.session import open_session

    with open_session(workdir(ctx), passphrases(no_prompt)) as s:
        rel = publish_package(s, Path(package), channel, urgent, held)
        ts = s.repo.md("timestamp").signed.version
    click.echo(
        f"published {rel.model} {rel.version} (security counter {rel.security_counter}, {rel.channel}) "
        f"as {rel.target}; timestamp version {ts}" + ("; held: offered to no device until `release rollout`" if held else "")
    )


@cli.command("list")
@click.option("--model", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_cmd(ctx, model, as_json) -> None:
    """List published and recalled releases."""
    from rich.console import Console
    from rich.table import Table

    from host_tools.release.keys import EnvPassphrases
    from host_tools.release.publish import list_releases
    from host_tools.release.session import open_session

    with open_session(workdir(ctx), EnvPassphrases(), lock=False) as s:
        rels = list_releases(s, model)
    if as_json:
        click.echo(json.dumps([{k: v for k, v in asdict(r).items() if k != "extra"} for r in rels], indent=2))
        return
    table = Table(title="releases")
    for col in ("model", "version", "counter", "channel", "kind", "status", "target / reason"):
        table.add_column(col)
    for r in rels:
        table.add_row(
            r.model, r.version, str(r.security_counter), r.channel, r.package_kind,
            r.status, r.target if r.status == "published" else f"{r.reason} ({r.recalled_at})",
        )
    Console().print(table)


@cli.command("recall")
@click.argument("version")
@click.option("--reason", required=True, help="Why (recorded in the signed recall list).")
@click.option("--model", default=None, help="Needed when VERSION exists for several models.")
@no_prompt_option
@click.pass_context
def recall_cmd(ctx, version, reason, model, no_prompt) -> None:
    """Withdraw VERSION: devices can no longer install it; it is listed as recalled."""
    from host_tools.release.recall import recall_release
    from host_tools.release.session import open_session

    with open_session(workdir(ctx), passphrases(no_prompt)) as s:
        rel = recall_release(s, version, reason, model)
    click.echo(f"recalled {rel.model} {rel.version}: {reason}")


from host_tools.cli.rollout import start_cmd as _rollout_cmd  # noqa: E402

cli.add_command(_rollout_cmd, "rollout")
