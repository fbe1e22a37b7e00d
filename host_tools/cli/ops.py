"""`medsentry ops keys init|add|revoke|list|publish`: operator keys and roles."""
from __future__ import annotations

import json

import click

from host_tools.cli.keys import CliPassphrases, ReleaseGroup, no_prompt_option, workdir
from host_tools.ops.keys import OpsKeyring, key_name


@click.group(cls=ReleaseGroup, name="ops")
def cli() -> None:
    """Operators who may send signed commands to devices."""


@cli.group("keys", cls=ReleaseGroup)
def keys_group() -> None:
    """Operator keys (Ed25519, encrypted files) and their roles."""


@keys_group.command("init")
@click.pass_context
def init_cmd(ctx: click.Context) -> None:
    """Create the operator list with the default roles."""
    ring = OpsKeyring(workdir(ctx))
    ring.init()
    for role, cmds in ring.roles().items():
        click.echo(f"role {role}: {', '.join(cmds)}")


@keys_group.command("add")
@click.argument("name")
@click.option("--role", required=True, help="admin, biomed, operator, security")
@no_prompt_option
@click.pass_context
def add_cmd(ctx: click.Context, name: str, role: str, no_prompt: bool) -> None:
    """Add operator NAME with a new key (passphrase: MEDSENTRY_KEY_PASSPHRASE_OPS_<NAME>)."""
    ring = OpsKeyring(workdir(ctx))
    ring.roles()  # a clear error before any prompt when not initialised
    op = ring.add(name, role, CliPassphrases(not no_prompt).new(key_name(name)))
    click.echo(f"operator {op.name} ({op.role}): key {op.keyid[:12]}… in {ring.key_path(name)}")
    click.echo("publish the policy for devices: medsentry ops keys publish")


@keys_group.command("revoke")
@click.argument("name")
@click.pass_context
def revoke_cmd(ctx: click.Context, name: str) -> None:
    """Revoke operator NAME (devices refuse its key once the policy is published)."""
    op = OpsKeyring(workdir(ctx)).revoke(name)
    click.echo(f"operator {op.name} revoked (key {op.keyid[:12]}…); publish: medsentry ops keys publish")


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """Operators, roles and key ids."""
    ring = OpsKeyring(workdir(ctx))
    if as_json:
        click.echo(json.dumps({
            "operators": [{"name": op.name, "role": op.role, "revoked": bool(op.revoked), "keyid": op.keyid}
                          for op in ring.operators()],
            "roles": {role: list(cmds) for role, cmds in ring.roles().items()}}, indent=1))
        return
    for op in ring.operators():
        state = "REVOKED" if op.revoked else "active"
        click.echo(f"{op.name:16} {op.role:10} {state:8} {op.keyid[:16]}")
    for role, cmds in ring.roles().items():
        click.echo(f"role {role}: {', '.join(cmds)}")


@keys_group.command("publish")
@click.option("--model", "models", multiple=True, help="Only these models [default: every model].")
@no_prompt_option
@click.pass_context
def publish_cmd(ctx: click.Context, models: tuple[str, ...], no_prompt: bool) -> None:
    """Publish the command policy as a signed TUF target per model."""
    from host_tools.cli.keys import passphrases
    from host_tools.ops.policy import publish_policy
    from host_tools.release.session import open_session

    ring = OpsKeyring(workdir(ctx))
    ring.operators()
    with open_session(workdir(ctx), passphrases(no_prompt)) as s:
        for model, version in publish_policy(s, ring, list(models) or None):
            click.echo(f"command policy {version} published for {model}")
