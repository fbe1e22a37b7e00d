"""The README's first-hour walkthrough, run exactly as written: every
```sh walkthrough block, in order, in one bash, from the repository's root, in
a temporary work dir. Real keys, Mosquitto, a simulated board, the collector."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

from host_tools.sim.boards import Boards

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```sh walkthrough\n(.*?)^```", re.S | re.M)


def walkthrough() -> str:
    blocks = BLOCK.findall((ROOT / "README.md").read_text())
    assert blocks, "README.md has no ```sh walkthrough block"
    return "\n".join(blocks)


def test_the_readme_walkthrough_runs_as_written(tmp_path):
    work = tmp_path / "work"
    env = dict(os.environ, MEDSENTRY_WORKDIR=str(work), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(["bash", "-e", "-x", "-c", walkthrough()], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        # Whatever happened: the script's background jobs and the boards stop.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        proc.wait()
        boards = Boards(work)
        for name in boards.names():
            if boards.supervisor_pid(name) is not None:
                boards.stop(name)
    assert proc.returncode == 0, out[-6000:]
    assert "pump-1: running 1.1.0 from slot b" in out, out[-4000:]
    stats = subprocess.run([str(ROOT / ".venv/bin/medsentry"), "telemetry", "stats", "--json"], cwd=ROOT,
                           env=env, capture_output=True, text=True, check=True)
    counters = json.loads(stats.stdout)["pump-1"]
    assert counters["accepted"] >= 5 and counters["update_reports"] >= 1, counters
    fleet = subprocess.run([str(ROOT / ".venv/bin/medsentry"), "fleet", "status", "--json"], cwd=ROOT,
                           env=env, capture_output=True, text=True, check=True)
    dev = {d["device_id"]: d for d in json.loads(fleet.stdout)["devices"]}["pump-1"]
    assert dev["firmware"] == "1.1.0", dev
    report = (work / "report.html").read_text()
    assert "pump-1" in report
