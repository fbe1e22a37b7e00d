"""`medsentry timestamp`: keep the repository fresh (cron-safe)."""
from __future__ import annotations

import click

from host_tools.cli.keys import ReleaseGroup, no_prompt_option, passphrases, workdir
from host_tools.release.durations import parse_duration


@click.group(cls=ReleaseGroup, name="timestamp")
def cli() -> None:
    """Timestamp (and other online roles) re-signing."""


@cli.command("refresh")
@click.option(
    "--margin",
    default=None,
    help="Re-sign online roles expiring within this duration [default: two timestamp periods].",
)
@no_prompt_option
@click.pass_context
def refresh_cmd(ctx, margin, no_prompt) -> None:
    """Issue a new timestamp (and re-sign roles near expiry). Safe to run from cron:

    \b
    0 * * * *  MEDSENTRY_KEY_PASSPHRASE_TIMESTAMP=... medsentry timestamp refresh --no-prompt
    """
    from host_tools.release.refresh import refresh
    from host_tools.release.session import open_session

    with open_session(workdir(ctx), passphrases(no_prompt)) as s:
        result = refresh(s, parse_duration(margin) if margin else None)
        expires = s.repo.md("timestamp").signed.expires
    click.echo(
        "re-signed " + ", ".join(f"{r} v{v}" for r, v in result.resigned.items())
        + f"; timestamp expires {expires:%Y-%m-%d %H:%M} UTC"
    )
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)
