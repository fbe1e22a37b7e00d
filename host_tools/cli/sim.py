"""`medsentry sim ...`: simulated boards."""
from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from host_tools.cli.errors import LibraryErrorGroup
from host_tools.mpvm import VMNotFound
from host_tools.release.errors import ReleaseError
from host_tools.sim.boards import BoardError, Boards
from host_tools.sim.build import BuildError
from host_tools.sim.image import ImageError
from host_tools.sim.uart import RemoteError, Uart, UartError

ERRORS = (BoardError, ImageError, BuildError, VMNotFound, UartError, ReleaseError, ValueError)


def _boards(ctx: click.Context) -> Boards:
    return Boards(ctx.obj["workdir"])


class SimGroup(LibraryErrorGroup):
    errors = ERRORS


@click.group("sim", cls=SimGroup)
def cli() -> None:
    """Simulated boards: a real MicroPython VM with a capped heap, littlefs flash and a pty UART."""


@cli.command()
@click.argument("name")
@click.option("--heap", default=None, help="Heap cap, e.g. 384k [default: 256k; the board's own once created].")
@click.option("--flash-size", default=None, help="Flash image size for a new board, e.g. 1.5M [default: 2M].")
@click.option("--model", default=None, help="Device model of a new board, e.g. monitor-v1 [default: pump-v2].")
@click.option("--netns", default=None, metavar="NAME",
              help="Run the board inside network namespace NAME (`ip netns add NAME`; needs root): its "
                   "sockets live on that network, its serial port stays on this host [default: this host's "
                   "network].")
@click.pass_context
def start(ctx: click.Context, name: str, heap: str | None, flash_size: str | None, model: str | None,
          netns: str | None) -> None:
    """Start board NAME (created on first use) and print its serial port."""
    st = _boards(ctx).start(name, heap=heap, flash_size=flash_size, model=model, netns=netns)
    click.echo(st["port"])


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the boards as a JSON array.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List boards: state, model, firmware, slot, provisioned, link, updates, port."""
    from host_tools.sim.listing import COLUMNS, rows

    found = rows(_boards(ctx))
    if as_json:
        click.echo(json.dumps(found, indent=1))
        return
    shown = [c for c in COLUMNS if c != "error"]
    table = Table(*shown)

    def cell(v: object) -> str:
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "no"
        return str(v)

    for r in found:
        table.add_row(*(cell(r[c]) for c in shown))
    out = Console(width=max(Console().width, 150))  # a pipe or a log gets whole lines
    out.print(table)
    for r in found:
        if r["error"]:
            out.print(f"{r['board']}: {r['state']}: {r['error']}", markup=False, highlight=False)


@cli.command("rm")
@click.argument("name")
@click.option("--force", is_flag=True, help="Stop the board first if it runs.")
@click.pass_context
def rm(ctx: click.Context, name: str, force: bool) -> None:
    """Remove board NAME and its flash image (its identity and data are gone for good)."""
    _boards(ctx).remove(name, force=force)
    click.echo(f"{name}: removed")


@cli.command()
@click.argument("name")
@click.pass_context
def stop(ctx: click.Context, name: str) -> None:
    """Stop board NAME (power off; its flash is kept)."""
    _boards(ctx).stop(name)
    click.echo(f"{name}: stopped")


@cli.command()
@click.argument("name")
@click.pass_context
def reset(ctx: click.Context, name: str) -> None:
    """Press the reset button of board NAME."""
    _boards(ctx).reset(name)
    click.echo(f"{name}: reset")


@cli.command("power-cut")
@click.argument("name")
@click.option("--at-write", type=int, default=None, help="Cut at the Nth flash write from now (that write never lands).")
@click.option("--seed", type=int, default=None, help="Draw N from this seed instead (1..--max-writes).")
@click.option("--max-writes", type=int, default=200, show_default=True)
@click.pass_context
def power_cut(ctx: click.Context, name: str, at_write: int | None, seed: int | None, max_writes: int) -> None:
    """Cut the power of board NAME now, or at a chosen flash write; it then powers up again."""
    n = _boards(ctx).power_cut(name, at_write=at_write, seed=seed, max_writes=max_writes)
    click.echo(f"{name}: power cut armed at flash write {n} from now" if n else f"{name}: power cut")


@cli.command()
@click.argument("name")
@click.option("--infuse", "rate", type=float, default=None, help="Start an infusion at RATE mL/h.")
@click.option("--vtbi", type=float, default=100.0, show_default=True, help="Volume to be infused, mL.")
@click.option("--stop", "stop_", is_flag=True, help="Stop the infusion.")
@click.option("--alarm", multiple=True, help="Raise an alarm code (repeatable).")
@click.option("--clear-alarms", is_flag=True)
@click.pass_context
def pump(ctx: click.Context, name: str, rate: float | None, vtbi: float, stop_: bool,
         alarm: tuple[str, ...], clear_alarms: bool) -> None:
    """Script the pump of board NAME (start/stop an infusion, raise alarms)."""
    if rate is None and not (stop_ or alarm or clear_alarms):
        raise click.UsageError("nothing to do: give --infuse, --stop, --alarm or --clear-alarms")
    b = _boards(ctx)
    if rate is not None:
        b.start_infusion(name, rate, vtbi)
    if stop_:
        b.stop_infusion(name)
    if alarm:
        b.set_alarm(name, list(alarm))
    if clear_alarms:
        b.set_alarm(name, [])


@cli.command("exec")
@click.argument("name")
@click.argument("code")
@click.pass_context
def exec_(ctx: click.Context, name: str, code: str) -> None:
    """Run CODE on board NAME through its UART raw REPL and print the output."""
    b = _boards(ctx)
    try:
        port = b.status(name).get("port")
        if not port:
            raise BoardError(f"board {name!r} is not running")
        with Uart(port) as u:
            click.echo(u.exec(code), nl=False)
    except RemoteError as e:
        raise click.ClickException(f"on the board:\n{e.traceback}") from None


@cli.command("wait")
@click.argument("name")
@click.option("--version", "version", default=None, help="Until the board runs this firmware version (confirmed, not on trial).")
@click.option("--step", default=None, help="Until the board's last update step is this one (e.g. up_to_date, deferred).")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds before giving up (exit 1).")
@click.pass_context
def wait_(ctx: click.Context, name: str, version: str | None, step: str | None, timeout: float) -> None:
    """Wait until board NAME's agent runs, with --version/--step until it also
    reached them (for scripts, like `rabbitmqctl wait`); prints the firmware
    version and slot it runs. Gives up with exit 1 after --timeout."""
    def reached(st: dict) -> bool:
        dev = st.get("device") or {}
        if dev.get("state") != "running":
            return False
        if version is not None and (dev.get("version") != version or dev.get("trial")):
            return False
        return step is None or (dev.get("update") or {}).get("step") == step

    b = _boards(ctx)
    b.existing(name)
    st = b.wait_for(name, reached, timeout=timeout,
                    what=" and ".join(x for x in (f"version {version}" if version else "",
                                                   f"update step {step}" if step else "") if x)
                    or "agent running")
    dev = st.get("device") or {}
    click.echo(f"{name}: running {dev.get('version')} from slot {dev.get('slot')}")
