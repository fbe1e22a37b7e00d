"""A power cut right after the collector acknowledged a message must not lose it: the
broker forgets what is acknowledged, so the SQLite commit that precedes every ack
(the fleet database's batch commit, the receive spool's commit) must be on stable
storage when it returns. In WAL mode that takes synchronous=FULL (NORMAL syncs
the WAL only at checkpoints: a committed, acknowledged batch could roll back).

We cannot cut this machine's power; we watch the system calls instead (strace):
between "about to commit" and "committed" the WAL file is fsynced."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (scripts/setup.sh)")

FLEET_DB = """
    from host_tools.collector import FleetDB
    db = FleetDB(sys.argv[1] + "/fleet.db")
    db.begin_batch()
    with db.transaction() as tx:
        tx.bump("pump-1", "accepted")
    os.write(1, b"COMMIT-START\\n")
    db.commit_batch()
    os.write(1, b"COMMIT-DONE\\n")
"""
SPOOL = """
    from host_tools.collector.spool import Spool
    s = Spool(sys.argv[1] + "/spool.db")
    s.add("medsentry/pump-1/telemetry", b"record", False)
    os.write(1, b"COMMIT-START\\n")
    s.commit()
    os.write(1, b"COMMIT-DONE\\n")
"""


@pytest.mark.parametrize("script", [FLEET_DB, SPOOL], ids=["fleet-db", "spool"])
def test_a_commit_is_on_disk_before_it_returns(tmp_path, script):
    code = "import os, sys\nsys.path.insert(0, %r)\n" % str(__import__("pathlib").Path(__file__).parents[2])
    code += textwrap.dedent(script)
    trace = tmp_path / "trace"
    subprocess.run(["strace", "-f", "-y", "-e", "trace=fsync,fdatasync,write", "-o", str(trace),
                    sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True, timeout=60)
    lines = trace.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "COMMIT-START" in line)
    done = next(i for i, line in enumerate(lines) if "COMMIT-DONE" in line)
    synced = [line for line in lines[start:done] if re.search(r"f(data)?sync\(\d+<[^>]*-wal>\) = 0", line)]
    assert synced, "\n".join(lines[start:done + 1])
