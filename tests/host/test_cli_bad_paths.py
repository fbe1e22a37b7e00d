"""Every `medsentry` command with bad paths (issue 11 item 6): the work
directory, and every path option or argument, set to a path under a regular
file, a FIFO, /dev/zero, a directory where a file is expected, a missing
directory and a place nothing may be created (/proc). Each run must end
quickly with exit 1 or 2 and a message: never a traceback, never a hang.

Commands are found by walking the click tree, so a new command is covered
the day it is added; required values that are not paths get a harmless
placeholder."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from host_tools.cli.main import cli

TIMEOUT = 15.0


def leaf_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()):
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from leaf_commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


COMMANDS = list(leaf_commands())


def placeholder(param: click.Parameter) -> str:
    if isinstance(param.type, click.Choice):
        return str(param.type.choices[0])
    if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
        return "1"
    return "x"


def args_for(cmd: click.Command, bad: dict[str, str]) -> list[str]:
    """Arguments for `cmd`: the bad path for the parameters named in `bad`,
    a placeholder for every other required parameter."""
    opts: list[str] = []
    pos: list[str] = []
    for p in cmd.params:
        if p.name not in bad and not p.required:
            continue
        value = bad.get(p.name) or placeholder(p)
        if isinstance(p, click.Argument):
            pos.append(value)
        else:
            opts += [p.opts[0], value]
    return [*opts, "--", *pos] if pos else opts


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("badpaths")
    (tmp / "file").write_text("not a directory\n")
    os.mkfifo(tmp / "fifo")
    (tmp / "dir").mkdir()
    return {
        "under-a-file": str(tmp / "file" / "sub"),
        "fifo": str(tmp / "fifo"),
        "dev-zero": "/dev/zero",
        "directory": str(tmp / "dir"),
        "missing-dir": str(tmp / "no" / "such" / "dir" / "f"),
        "proc": "/proc/medsentry-test/f",
    }


def invoke(workdir: str, argv: list[str]):
    box: dict = {}

    def target():
        box["r"] = CliRunner().invoke(cli, ["--workdir", workdir, *argv])

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(TIMEOUT)
    assert not t.is_alive(), f"`medsentry --workdir {workdir} {' '.join(argv)}` hung"
    return box["r"]


def check(r, what: str) -> None:
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"{what}: traceback {r.exception!r}") from r.exception
    assert "Traceback" not in r.output, what
    assert r.exit_code in (1, 2), f"{what}: exit {r.exit_code}: {r.output}"
    assert "Error" in r.output or "error" in r.output or "cannot" in r.output, f"{what}: no message: {r.output}"


# commands that, given a usable work directory, do their job (read-only listings)
READS_NOTHING_BAD = {("sim", "list"), ("telemetry", "stats"), ("keys", "list"), ("pki", "list"),
                     ("repo", "slot-size"), ("rollout", "status")}


# commands that do not use the work directory (their paths are tested below)
NO_WORKDIR = {("demo",), ("package", "mip-index")}  # mip-index reads the device tree
WORKDIR_COMMANDS = [(p, c) for p, c in COMMANDS if p not in NO_WORKDIR]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a command's default output lands here, never in the tree


@pytest.mark.parametrize("kind", ["under-a-file", "fifo", "dev-zero", "proc"])
@pytest.mark.parametrize("path,cmd", WORKDIR_COMMANDS, ids=[" ".join(p) for p, _ in WORKDIR_COMMANDS])
def test_every_command_with_a_bad_workdir(places, kind, path, cmd):
    r = invoke(places[kind], [*path, *args_for(cmd, {})])
    if r.exit_code == 0:  # only a command with nothing to read may succeed, and only by saying so
        assert path in READS_NOTHING_BAD and kind in ("under-a-file", "proc"), (path, kind, r.output)
        return
    check(r, f"{' '.join(path)} with workdir {kind}")


# options without which a command stops before it reads the path under test
REACH_THE_PATH = {("repo", "serve"): ["--tls"], ("device", "provision"): ["--broker-port", "1"]}
PATH_PARAMS = [(path, cmd, p.name) for path, cmd in COMMANDS for p in cmd.params
               if isinstance(p.type, click.Path)]


@pytest.mark.parametrize("kind", ["under-a-file", "fifo", "dev-zero", "directory", "missing-dir", "proc"])
@pytest.mark.parametrize("path,cmd,name", PATH_PARAMS, ids=[f"{' '.join(p)} {n}" for p, _, n in PATH_PARAMS])
def test_every_path_parameter_with_bad_paths(places, tmp_path, kind, path, cmd, name):
    param = next(p for p in cmd.params if p.name == name)
    if kind == "directory" and param.type.dir_okay:
        pytest.skip("a directory is what this parameter takes")
    if kind == "missing-dir" and not param.type.file_okay:
        pytest.skip("an output directory the command creates (demo --out, broker config --out)")
    (tmp_path / "wd" / "repository").mkdir(parents=True)  # so `repo serve` gets as far as its certificate
    extra = REACH_THE_PATH.get(path, [])
    r = invoke(str(tmp_path / "wd"), [*path, *extra, *args_for(cmd, {name: places[kind]})])
    check(r, f"{' '.join(path)} --{name} {kind}")
