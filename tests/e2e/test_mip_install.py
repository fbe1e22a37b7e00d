"""Issue 16 part 3: the device packages are installable the MicroPython way.

`medsentry package mip-index` writes a micropython-lib style index, the same
server as `repo serve --mip-index` serves it over loopback, and the real
`mpremote mip install --index URL medsentry-agent` copies the agent and its
dependencies onto an open sim board over its UART, where the installed .mpy
code then runs.

The board is a development board: open fuses, the loader, no application in
its slots. (The factory application arms a 5 s watchdog that nothing feeds
once mpremote stops it for the raw REPL: the board resets mid-install.)
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.sim import build as simbuild
from host_tools.sim import image as simimage
from host_tools.sim.boards import Boards

MPREMOTE = str(Path(sys.executable).parent / "mpremote")
MEDSENTRY = str(Path(sys.executable).parent / "medsentry")
TARGET = "/data/lib"


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    out = tmp_path_factory.mktemp("mip") / "index"
    r = CliRunner().invoke(cli, ["package", "mip-index", "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture
def dev_board(tmp_path):
    boards = Boards(tmp_path / "boards")
    d = boards.create("dev")
    build = simbuild.build(boards.workdir)
    simimage.factory_program(d / "flash.img", build, install={"loader": build.loader},
                             files={"state/boot.json": json.dumps({"active": "a", "floor": 0, "trial": None,
                                                                   "events": []})})
    port = boards.start("dev")["port"]
    boards.wait_for("dev", lambda s: (s.get("device") or {}).get("state") == "booted", timeout=30, what="boot")
    yield boards, port
    boards.stop("dev")


@contextmanager
def repo_serve_mip(index: Path, workdir: Path):
    """`medsentry repo serve --mip-index INDEX --port 0` on loopback; yields its URL."""
    proc = subprocess.Popen([MEDSENTRY, "--workdir", str(workdir), "repo", "serve", "--mip-index", str(index),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
        assert m, line
        yield m.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def _mpremote(port: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([MPREMOTE, "connect", port, *args], capture_output=True, text=True, timeout=timeout)


def test_index_has_the_micropython_lib_layout(index):
    agent = json.loads((index / "package" / "6" / "medsentry-agent" / "latest.json").read_text())
    assert agent["deps"] == [["medsentry-updater", "latest"], ["medsentry-board", "latest"]]
    paths = dict(agent["hashes"])
    assert "agent/main.mpy" in paths and all(p.endswith(".mpy") for p in paths)
    blob = (index / "file" / paths["agent/main.mpy"][:2] / paths["agent/main.mpy"]).read_bytes()
    assert blob[:2] == b"M\x06"  # an .mpy of the board's bytecode version
    src = json.loads((index / "package" / "py" / "medsentry-updater" / "latest.json").read_text())
    assert "updater/loader.py" not in dict(src["hashes"])  # the manifest's list, not the directory
    names = [p["name"] for p in json.loads((index / "index.json").read_text())["packages"]]
    assert names == ["medsentry-agent", "medsentry-updater", "medsentry-board"]


def test_mip_index_of_a_tree_without_manifests_is_refused(tmp_path):
    r = CliRunner().invoke(cli, ["package", "mip-index", "-o", str(tmp_path / "out"), "--source-root", str(tmp_path)])
    assert r.exit_code != 0 and "has no manifest.py" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out" / "index.json").exists()


def test_mpremote_mip_install_onto_an_open_board(index, dev_board, tmp_path):
    boards, port = dev_board
    with repo_serve_mip(index, tmp_path / "wd") as url:
        first = _mpremote(port, "mip", "install", "--index", url, "--target", TARGET, "medsentry-agent")
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        assert "Installing: /data/lib/updater/tuf/updater.mpy" in first.stdout
        # mip checks every file on the board against the index's hash: all there, none fetched again.
        again = _mpremote(port, "mip", "install", "--index", url, "--target", TARGET, "medsentry-agent")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Installing:" not in again.stdout and again.stdout.count("Exists:") >= 60
    run = _mpremote(port, "exec", "import sys; sys.path.insert(0, '/data/lib'); from agent import selftest; "
                    "import agent.main; print('selftest', selftest.run(board), agent.main.__file__)")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "selftest None /data/lib/agent/main.mpy" in run.stdout
    assert boards.status("dev")["resets"].get("watchdog", 0) == 0
