"""`medsentry keys`: signing keys and per-model roles (thin layer over host_tools.release)."""
from __future__ import annotations

import json
import os

import click

from host_tools.release.config import DEFAULT_EXPIRY, EXPIRY_ROLES, KEY_TYPES, ReleaseConfig
from host_tools.cli.errors import LibraryErrorGroup
from host_tools.release.errors import MissingPassphrase, ReleaseError
from host_tools.release.keys import EnvPassphrases, env_name
from host_tools.release.layout import Layout


class ReleaseGroup(LibraryErrorGroup):
    """Click group that reports release-tooling errors as clean CLI errors.

    Ctrl-C while a change is being written is held until the change is complete
    (host_tools.release.journal); Ctrl-C after it was committed exits 130 with
    a note saying so, never click's "Aborted!" (which would claim nothing happened)."""

    errors = (ReleaseError,)

    def invoke(self, ctx: click.Context):
        from host_tools.release import journal

        try:
            result = super().invoke(ctx)
        except KeyboardInterrupt:
            if not journal.committed_in_process():
                raise
            click.echo("interrupted after the change was committed: the repository holds it, complete",
                       err=True)
            ctx.exit(130)
        if journal.interrupted_commit():
            click.echo("note: Ctrl-C arrived while the change was being written; it was completed first",
                       err=True)
        return result


class CliPassphrases:
    """Passphrases from MEDSENTRY_KEY_PASSPHRASE_<NAME> (MEDSENTRY_NEW_KEY_PASSPHRASE_<NAME>
    for a rotation's new key), else asked for on the terminal."""

    TRIES = 3  # typed passphrases per key, the first one included

    def __init__(self, prompt: bool = True) -> None:
        self.env = EnvPassphrases()
        self.prompt = prompt
        self.typed: dict[str, int] = {}  # key name -> passphrases typed for it

    def existing(self, keyname: str) -> str:
        try:
            return self.env.existing(keyname)
        except MissingPassphrase:
            if not self.prompt:
                raise
            self.typed[keyname] = 1
            return click.prompt(f"Passphrase for key {keyname}", hide_input=True)

    def again(self, keyname: str) -> str | None:
        """After a wrong passphrase: ask again if it was typed (None: give up)."""
        n = self.typed.get(keyname, 0)
        if n == 0 or n >= self.TRIES:
            return None
        self.typed[keyname] = n + 1
        click.echo(f"wrong passphrase for key {keyname} (try {n + 1} of {self.TRIES})", err=True)
        return click.prompt(f"Passphrase for key {keyname}", hide_input=True)

    def new(self, keyname: str, rotation: bool = False) -> str:
        try:
            return self.env.new(keyname, rotation)
        except MissingPassphrase:
            if not self.prompt:
                raise
            what = "new key" if rotation else "key"
            return ask_new_passphrase(f"Passphrase for the {what} {keyname} (its own)")


def ask_new_passphrase(text: str) -> str:
    """Prompt twice; a weak or mismatched entry is explained and asked again."""
    from host_tools.passphrase import MIN_LENGTH, weakness

    def policy(value: str) -> str:
        why = weakness(value)
        if why:
            raise click.BadParameter(f"passphrase {why}")
        return value

    return click.prompt(f"{text}, at least {MIN_LENGTH} characters", hide_input=True,
                        confirmation_prompt=True, value_proc=policy)


def passphrases(no_prompt: bool = False) -> CliPassphrases:
    return CliPassphrases(prompt=not no_prompt)


no_prompt_option = click.option(
    "--no-prompt",
    is_flag=True,
    help="Never ask on the terminal: passphrases must come from MEDSENTRY_KEY_PASSPHRASE_<NAME>.",
)


def workdir(ctx: click.Context) -> str:
    return (ctx.obj or {}).get("workdir", ".medsentry")


@click.group(cls=ReleaseGroup, name="keys")
def cli() -> None:
    """Signing keys: root (offline, threshold), online targets/snapshot/timestamp, one per device model.

    Passphrases: each key file is encrypted with its own passphrase, read from
    MEDSENTRY_KEY_PASSPHRASE_<NAME> (e.g. ..._ROOT_1, ..._TIMESTAMP, ..._MODEL_PUMP_V2)
    or asked for."""


@cli.command("init")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="ed25519", show_default=True)
@click.option("--root-keys", type=int, default=3, show_default=True, help="Number of root keys.")
@click.option("--threshold", type=int, default=2, show_default=True, help="Root signatures required.")
@click.option(
    "--expiry",
    "expiries",
    multiple=True,
    metavar="ROLE=DURATION",
    help="Override an expiry, e.g. timestamp=12h (roles: "
    + ", ".join(f"{r} {DEFAULT_EXPIRY[r]}" for r in EXPIRY_ROLES)
    + ").",
)
@no_prompt_option
@click.pass_context
def init_cmd(ctx, key_type, root_keys, threshold, expiries, no_prompt) -> None:
    """Create the keys and version 1 of the repository (consistent snapshots on)."""
    from host_tools.release.initialize import init_workdir

    expiry = dict(DEFAULT_EXPIRY)
    for item in expiries:
        role, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: use ROLE=DURATION", param_hint="--expiry")
        expiry[role.strip()] = value.strip()
    config = ReleaseConfig(key_type=key_type, root_keys=root_keys, root_threshold=threshold, expiry=expiry)
    result = init_workdir(workdir(ctx), passphrases(no_prompt), config)
    click.echo(f"root: {threshold} of {root_keys} {key_type} keys; online keys for targets, snapshot, timestamp")
    click.echo(f"trusted root for devices: {result.root_path}")
    click.echo("next: medsentry keys add-model MODEL")


@cli.command("add-model")
@click.argument("model")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default=None, help="Key type of the model key [default: the one chosen at init].")
@no_prompt_option
@click.pass_context
def add_model_cmd(ctx, model, key_type, no_prompt) -> None:
    """Create MODEL's key and delegated role (paths MODEL/*). Publishing needs it."""
    from host_tools.release.roles.models import add_model
    from host_tools.release.session import open_session

    with open_session(workdir(ctx), passphrases(no_prompt)) as s:
        keyid = add_model(s, model, key_type)
    click.echo(f"model {model}: role delegated to key {keyid[:12]}… (file keys/model-{model}-{keyid[:12]}.pem)")


@cli.command("rotate")
@click.argument("role")
@click.option(
    "--replace",
    multiple=True,
    metavar="KEYNAME",
    help="For root: replace only these root keys (e.g. root-2) [default: all].",
)
@click.option("--key-type", type=click.Choice(KEY_TYPES), default=None)
@no_prompt_option
@click.pass_context
def rotate_cmd(ctx, role, replace, key_type, no_prompt) -> None:
    """Replace the key(s) of ROLE: root, targets, snapshot, timestamp or a model name.

    The new key's passphrase comes from MEDSENTRY_NEW_KEY_PASSPHRASE_<NAME> or a prompt."""
    from host_tools.release.rotate import rotate_key
    from host_tools.release.session import open_session

    with open_session(workdir(ctx), passphrases(no_prompt)) as s:
        result = rotate_key(s, role, list(replace) or None, key_type)
    click.echo(
        f"{role}: replaced {len(result.old_keyids)} key(s) with "
        + ", ".join(k[:12] + "…" for k in result.new_keyids)
        + f"; root is now version {result.root_version}"
    )
    with open_session(workdir(ctx), EnvPassphrases(), lock=False) as s:
        names = sorted({s.keystore.name_of(k) or "?" for k in result.new_keyids})
    click.echo("from now on unlock with: " + ", ".join(env_name(n) for n in names))


@cli.command("rekey")
@click.argument("names", nargs=-1)
@click.option("--new-passphrase", is_flag=True,
              help="Also change the passphrase (from MEDSENTRY_NEW_KEY_PASSPHRASE_<NAME> or a prompt).")
@no_prompt_option
@click.pass_context
def rekey_cmd(ctx, names, new_passphrase, no_prompt) -> None:
    """Re-encrypt key files with today's KDF (scrypt); all active keys or NAMES.

    A passphrase that fails today's policy must be replaced: the new one comes
    from MEDSENTRY_NEW_KEY_PASSPHRASE_<NAME> or a prompt."""
    from host_tools.release.fsutil import exclusive_lock
    from host_tools.release.keys import KeyStore

    layout = Layout.of(workdir(ctx))
    store = KeyStore(layout, passphrases(no_prompt))
    if not store.any_keys():
        raise click.ClickException(f"no key files in {layout.keys}: run `medsentry keys init` first")
    with exclusive_lock(layout.lock):
        index = store.index()
        unknown = sorted(set(names) - {n for n, _ in index.values()})
        if unknown:
            raise click.BadParameter(f"no active key named {', '.join(unknown)}", param_hint="NAMES")
        for keyid, (name, _) in sorted(index.items(), key=lambda kv: kv[1][0]):
            if names and name not in names:
                continue
            done = store.rekey(keyid, new_passphrase)
            if done is None:
                click.echo(f"{name}: already current")
            else:
                click.echo(f"{name}: {done[1]} -> {done[2]}")


@cli.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_cmd(ctx, as_json) -> None:
    """Show the active key files and which role trusts each."""
    from rich.console import Console
    from rich.table import Table

    from host_tools.release.session import open_session

    with open_session(workdir(ctx), EnvPassphrases(), lock=False) as s:
        repo = s.repo
        trusted: dict[str, str] = {}
        for role in ("root", "targets", "snapshot", "timestamp", *repo.models()):
            for keyid in repo.role_keys(role)[0]:
                trusted[keyid] = role
        rows = []
        for keyid, (name, path) in sorted(s.keystore.index().items(), key=lambda kv: kv[1][0]):
            rows.append(
                {
                    "name": name,
                    "keyid": keyid,
                    "role": trusted.get(keyid, "(not trusted)"),
                    "file": os.path.relpath(path),
                    "passphrase_env": env_name(name),
                }
            )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"keys in {Layout.of(workdir(ctx)).keys}")
    for col in ("name", "role", "keyid", "file", "passphrase_env"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["role"], r["keyid"][:16] + "…", r["file"], r["passphrase_env"])
    Console().print(table)
