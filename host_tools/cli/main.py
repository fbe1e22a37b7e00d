"""`medsentry` entry point: registers each command group module."""
from __future__ import annotations

import importlib
from pathlib import Path

import click

from host_tools.cli.errors import TopGroup

# One entry per command-group module under host_tools/cli/. Each module defines
# a click group or command named `cli`. Add a line here to register a new one.
GROUP_MODULES = [
    "host_tools.cli.sim",
    "host_tools.cli.pki",
    "host_tools.cli.broker",
    "host_tools.cli.collector",
    "host_tools.cli.telemetry",
    "host_tools.cli.device",
    "host_tools.cli.demo",
    "host_tools.cli.keys",
    "host_tools.cli.package",
    "host_tools.cli.release",
    "host_tools.cli.repo",
    "host_tools.cli.timestamp",
    "host_tools.cli.nac",
    "host_tools.cli.network",
    "host_tools.cli.events",
    "host_tools.cli.alerts",
    "host_tools.cli.fleet",
    "host_tools.cli.assess",
    "host_tools.cli.rollout",
    "host_tools.cli.ops",
    "host_tools.cli.command",
    "host_tools.cli.console",
]


def _check_workdir(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """The work directory is a directory, or does not exist yet."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise click.BadParameter(f"{value} exists and is not a directory", ctx=ctx, param=param)
    return value


@click.group(cls=TopGroup)
@click.version_option(package_name="medsentry", prog_name="medsentry", message="%(prog)s %(version)s")
@click.option(
    "--workdir",
    envvar="MEDSENTRY_WORKDIR",
    default=".medsentry",
    show_default=True,
    type=click.Path(file_okay=False),
    callback=_check_workdir,
    help="Where boards, keys, the repository and the fleet database live.",
)
@click.pass_context
def cli(ctx: click.Context, workdir: str) -> None:
    """medsentry: security agent and TUF-verified updater tools for medical device fleets."""
    ctx.obj = {"workdir": workdir}


for _name in GROUP_MODULES:
    _mod = importlib.import_module(_name)
    cli.add_command(_mod.cli)


def main() -> None:
    cli(prog_name="medsentry")


if __name__ == "__main__":
    main()
