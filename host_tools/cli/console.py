"""`medsentry console`: console accounts (user add|remove|list) and sessions
(`medsentry console NAME`, interactive or `--exec CMD`)."""
from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path

import click

from host_tools.cli.errors import LibraryErrorGroup
from host_tools.console import store
from host_tools.console.session import ConsoleFailure, Session, parse
from host_tools.sim.boards import BoardError, Boards


class ConsoleGroup(LibraryErrorGroup):
    errors = (store.ConsoleError, BoardError)

    def resolve_command(self, ctx, args):
        # `medsentry console NAME ...` opens a session on board NAME.
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "session", self.commands["session"], args
        return super().resolve_command(ctx, args)


@click.group("console", cls=ConsoleGroup)
def cli() -> None:
    """Maintenance console: accounts (password + TOTP) and sessions over the UART."""


@cli.group("user", cls=ConsoleGroup)
def user() -> None:
    """Console accounts for a board or a model, sealed on the board at provisioning."""


@user.command("add")
@click.argument("target")
@click.argument("name")
@click.option("--role", type=click.Choice(store.ROLES), required=True)
@click.option("--qr", "qr_path", type=click.Path(dir_okay=False), default=None,
              help="Where to write the QR code image [default: <workdir>/console/<target>-<name>.png].")
@click.pass_context
def user_add(ctx: click.Context, target: str, name: str, role: str, qr_path: str | None) -> None:
    """Add account NAME with ROLE for TARGET (a board name or a model)."""
    workdir = ctx.obj["workdir"]
    store.ensure_dir(workdir)
    if name in store.load(workdir, target):  # the store is usable before anything is asked
        raise store.ConsoleError(f"{name} already has an account on {target}; remove it first")
    path = Path(qr_path) if qr_path else Path(workdir) / "console" / f"{target}-{name}.png"
    if (path.exists() and not path.is_file()) or (qr_path and not path.parent.is_dir()):
        raise store.ConsoleError(f"cannot write the QR code to {path}: not a regular file in a directory")
    password = os.environ.get("MEDSENTRY_CONSOLE_PASSWORD")
    if password is None:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    e = store.add(workdir, target, name, role, password)
    try:
        term = store.write_qr(e.uri, path)
        os.chmod(path, 0o600)
    except OSError as exc:
        store.remove(workdir, target, name)  # nothing half-done: enrol again with a good path
        raise store.ConsoleError(f"cannot write the QR code to {path}: {exc.strerror or exc}; "
                                 f"{name} was not added") from None
    click.echo(term)
    click.echo(f"{name} ({role}) added for {target}; enrol the authenticator app with the QR code above "
               f"(also written to {path}) or this URI:\n{e.uri}")
    click.echo(f"it reaches a board when the board is provisioned (`medsentry device provision`)")


@user.command("remove")
@click.argument("target")
@click.argument("name")
@click.pass_context
def user_remove(ctx: click.Context, target: str, name: str) -> None:
    """Remove account NAME of TARGET."""
    store.remove(ctx.obj["workdir"], target, name)
    click.echo(f"{name} removed from {target}")


@user.command("list")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def user_list(ctx: click.Context, target: str, as_json: bool) -> None:
    """List the accounts of TARGET (names and roles; never secrets)."""
    store.ensure_dir(ctx.obj["workdir"])
    accounts = sorted(store.load(ctx.obj["workdir"], target).items())
    if as_json:
        click.echo(json.dumps([{"name": name, "role": u["role"]} for name, u in accounts], indent=1))
        return
    for name, u in accounts:
        click.echo(f"{name}\t{u['role']}")


@cli.command("session", hidden=True)
@click.argument("name")
@click.option("--user", "user_name", default=None, help="Account name (prompted when missing).")
@click.option("--code", default=None, help="TOTP code (prompted when missing).")
@click.option("--exec", "command", default=None, help="Run one command, print its answer, log out.")
@click.option("--json", "as_json", is_flag=True, help="With --exec: print the answer as JSON.")
@click.option("--yes", is_flag=True, help="With --exec clear-queue: confirm.")
@click.option("--timeout", default=15.0, show_default=True)
@click.pass_context
def session(ctx: click.Context, name: str, user_name: str | None, code: str | None, command: str | None,
            as_json: bool, yes: bool, timeout: float) -> None:
    """Open a console session on board NAME (or a serial port path).
    The password comes from MEDSENTRY_CONSOLE_PASSWORD or a prompt (never echoed)."""
    port = name if name.startswith("/dev/") else Boards(ctx.obj["workdir"]).status(name).get("port")
    if not port:
        raise click.ClickException(f"board {name} is not running")
    user_name = user_name or click.prompt("login")
    password = os.environ.get("MEDSENTRY_CONSOLE_PASSWORD") or getpass.getpass("password: ")
    code = code or click.prompt("TOTP code", hide_input=True)
    try:
        with Session(port, timeout=timeout) as s:
            click.echo(s.login(user_name, password, code).strip().splitlines()[-2], err=True)
            if command is not None:
                try:
                    body = s.run(command, confirm=yes)
                finally:
                    s.logout()
                out = parse(body)
                click.echo(json.dumps({"ok": True, "command": command, "result": out}) if as_json else body)
                return
            _interactive(s)
    except ConsoleFailure as e:
        if as_json:
            click.echo(json.dumps({"ok": False, "command": command, "error": str(e)}))
        else:
            click.echo(f"Error: {e}", err=True)
        sys.exit(e.code)


def _interactive(s: Session) -> None:
    while s.user is not None:
        try:
            line = input(f"{s.user}@medsentry$ ")
        except EOFError:
            line = "logout"
        if line.strip() == "logout":
            s.logout()
            return
        try:
            click.echo(s.run(line))
        except ConsoleFailure as e:
            click.echo(str(e))
            if e.code == 1:
                return
