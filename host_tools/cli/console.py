"""`medsentry console`: console accounts (user add|remove|list) and sessions
(`medsentry console NAME`, interactive or `--exec CMD`)."""
from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click

from host_tools.cli.errors import LibraryErrorGroup
from host_tools.cli.keys import CliPassphrases, no_prompt_option
from host_tools.console import store
from host_tools.console.session import ConsoleFailure, Session, parse
from host_tools.ops.envelope import CommandInputError
from host_tools.pki.errors import PkiError
from host_tools.release.errors import ReleaseError
from host_tools.sim.boards import BoardError, Boards

if TYPE_CHECKING:
    from host_tools.ops.keys import OpsKeyring


class ConsoleGroup(LibraryErrorGroup):
    errors = (store.ConsoleError, BoardError, ReleaseError, CommandInputError, PkiError)

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


def send_options(f):
    """Options of the commands that send an account change to a provisioned board."""
    for opt in reversed([
        click.option("--host", default=None, help="Broker host [default: from `broker run`]."),
        click.option("--port", type=int, default=None),
        click.option("--wait/--no-wait", default=True, show_default=True,
                     help="Wait for the board's result (needs the collector running)."),
        click.option("--timeout", default=60.0, show_default=True),
        no_prompt_option,
    ]):
        f = opt(f)
    return f


def _operator(ctx: click.Context, operator: str, no_prompt: bool) -> tuple[OpsKeyring, Callable[[], str]]:
    """(keyring, passphrase getter) of OPERATOR: the operator is checked now, the
    passphrase asked (or read from the environment) only when a key is used."""
    from host_tools.ops.keys import OpsKeyring, key_name

    ring = OpsKeyring(ctx.obj["workdir"])
    ring.get(operator)
    return ring, lambda: CliPassphrases(not no_prompt).existing(key_name(operator))


def _send(ctx: click.Context, device: str, args: list[str], operator: str, host: str | None, port: int | None,
          wait: bool, timeout: float, no_prompt: bool) -> None:
    """Sign console-user ARGS for DEVICE as OPERATOR, publish it, and (with wait)
    report the board's result: exit 1 unless it says done."""
    from host_tools.cli.collector import broker_address
    from host_tools.collector.dbconn import fleet_db
    from host_tools.ops import commands
    from host_tools.ops.keys import OpsError

    wd = ctx.obj["workdir"]
    ring, passphrase = _operator(ctx, operator, no_prompt)
    h, p = broker_address(wd, host, port)
    sent = commands.sign(ring, operator, passphrase(), device, "console-user", args)
    try:
        commands.publish(wd, h, p, device, sent.envelope)
    except OpsError as exc:
        again = (f"medsentry console user push {device} {args[1]} --as {operator}" if args[0] == "add"
                 else f"medsentry console user remove {device} {args[1]} --send-as {operator}")
        raise click.ClickException(f"{exc}; nothing reached {device}: send it again with `{again}`") from None
    commands.record(ring, sent)
    click.echo(f"sent console-user {args[0]} {args[1]} to {device} as {operator} (counter {sent.ctr})")
    if not wait:
        return
    r = commands.wait_result(fleet_db(wd), device, sent.ctr, timeout)
    if r is None:
        raise click.ClickException(f"no result from {device} within {timeout:.0f} s "
                                   f"(`medsentry command list` shows it when it comes)")
    click.echo(f"{device}: {r['result']}" + (f" ({r['reason']})" if r["reason"] else ""))
    if r["result"] != "done":
        ctx.exit(1)


@user.command("add")
@click.argument("target")
@click.argument("name")
@click.option("--role", type=click.Choice(store.ROLES), required=True)
@click.option("--send-as", "operator", default=None,
              help="TARGET is a provisioned board: also send the account to it now, signed by this operator.")
@send_options
@click.option("--qr", "qr_path", type=click.Path(dir_okay=False), default=None,
              help="Where to write the QR code image [default: <workdir>/console/<target>-<name>.png].")
@click.pass_context
def user_add(ctx: click.Context, target: str, name: str, role: str, qr_path: str | None, operator: str | None,
             host: str | None, port: int | None, wait: bool, timeout: float, no_prompt: bool) -> None:
    """Add account NAME with ROLE for TARGET (a board name or a model)."""
    workdir = ctx.obj["workdir"]
    store.ensure_dir(workdir)
    if operator is not None:
        from host_tools.pki import FleetPKI

        FleetPKI(workdir).device(target)  # a board the fleet knows, before anything is asked
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
    if operator is None:
        click.echo("it reaches a board when the board is provisioned (`medsentry device provision`), "
                   "or a provisioned one with `medsentry console user push BOARD NAME --as OPERATOR`")
        return
    from host_tools.console import remote

    _send(ctx, target, remote.console_user_args(workdir, target, name), operator, host, port, wait, timeout,
          no_prompt)


@user.command("push")
@click.argument("board")
@click.argument("name")
@click.option("--as", "operator", required=True, help="Operator whose key signs (role with console-user).")
@send_options
@click.pass_context
def user_push(ctx: click.Context, board: str, name: str, operator: str, host: str | None, port: int | None,
              wait: bool, timeout: float, no_prompt: bool) -> None:
    """Send account NAME (kept here for BOARD or its model) to the provisioned BOARD:
    a signed console-user command, the secrets sealed for that board alone."""
    from host_tools.console import remote

    _send(ctx, board, remote.console_user_args(ctx.obj["workdir"], board, name), operator, host, port, wait,
          timeout, no_prompt)


@user.command("remove")
@click.argument("target")
@click.argument("name")
@click.option("--send-as", "operator", default=None,
              help="TARGET is a provisioned board: also remove the account on it now, signed by this operator.")
@send_options
@click.pass_context
def user_remove(ctx: click.Context, target: str, name: str, operator: str | None, host: str | None,
                port: int | None, wait: bool, timeout: float, no_prompt: bool) -> None:
    """Remove account NAME of TARGET (here; with --send-as also on the board)."""
    if operator is None:
        store.remove(ctx.obj["workdir"], target, name)
        click.echo(f"{name} removed from {target}")
        return
    if name in store.load(ctx.obj["workdir"], target):
        store.remove(ctx.obj["workdir"], target, name)
        click.echo(f"{name} removed from {target} here")
    _send(ctx, target, ["remove", name], operator, host, port, wait, timeout, no_prompt)


@cli.command("unlock-token")
@click.argument("board")
@click.argument("user_name", metavar="USER")
@click.argument("challenge")
@click.option("--as", "operator", required=True, help="Operator whose key signs (role with unlock-console).")
@no_prompt_option
@click.pass_context
def unlock_token(ctx: click.Context, board: str, user_name: str, challenge: str, operator: str,
                 no_prompt: bool) -> None:
    """The one-time token for USER's login on BOARD when its clock is unset
    (the console shows CHALLENGE after the password)."""
    from host_tools.console import remote

    ring, passphrase = _operator(ctx, operator, no_prompt)
    click.echo(remote.unlock_token(ring, operator, passphrase(), board, user_name, challenge))


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
@click.option("--unlock-as", "operator", default=None,
              help="When the board clock is unset: sign its one-time unlock token with this operator's key.")
@no_prompt_option
@click.pass_context
def session(ctx: click.Context, name: str, user_name: str | None, code: str | None, command: str | None,
            as_json: bool, yes: bool, timeout: float, operator: str | None, no_prompt: bool) -> None:
    """Open a console session on board NAME (or a serial port path).
    The password comes from MEDSENTRY_CONSOLE_PASSWORD or a prompt (never echoed)."""
    port = name if name.startswith("/dev/") else Boards(ctx.obj["workdir"]).status(name).get("port")
    if not port:
        raise click.ClickException(f"board {name} is not running")
    user_name = user_name or click.prompt("login")
    password = os.environ.get("MEDSENTRY_CONSOLE_PASSWORD") or getpass.getpass("password: ")
    ask_code = code if code else (lambda: click.prompt("TOTP code", hide_input=True))
    token = None
    if operator is not None:
        from host_tools.console import remote

        ring, passphrase = _operator(ctx, operator, no_prompt)

        def token(device: str, challenge: str) -> str:
            # the device id as the board names itself in its challenge line
            return remote.unlock_token(ring, operator, passphrase(), device, user_name, challenge)
    elif command is None:
        def token(device: str, challenge: str) -> str:
            click.echo(f"the board clock is unset: TOTP cannot be checked. An operator runs\n"
                       f"  medsentry console unlock-token {device} {user_name} {challenge} --as OPERATOR", err=True)
            return click.prompt("unlock token")
    try:
        with Session(port, timeout=timeout) as s:
            click.echo(s.login(user_name, password, ask_code, token).strip().splitlines()[-2], err=True)
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
