"""Issue 14 item 2 ("stale TUF metadata"): after a refresh the update agent notes
[version, expiry] of every trusted top-level role, timestamp and snapshot
included, for its posture report; checked on the real VM against a served
TUF repository (the real device TUF client)."""
from __future__ import annotations

import json
import shutil
import time

from tuf_repo import TufRepo, run_device_script, serve

SCRIPT = r'''
import sys, json
from updater.tuf.updater import Updater
from agent.updates import UpdateAgent

class Holder:
    pass

up = Updater(sys.argv[1], sys.argv[2], now=int(sys.argv[3]))
up.refresh()
h = Holder()
UpdateAgent._note_tuf(h, up)
print("TUF " + json.dumps(h.tuf_info))
'''


def test_agent_notes_timestamp_and_snapshot(tmp_path):
    repo = TufRepo(tmp_path / "repo")
    repo.add_target("pump-v2/a.bin", b"a")
    repo.publish()
    meta = tmp_path / "device"
    meta.mkdir()
    shutil.copy(repo.root_path(1), meta / "root.json")
    ts = json.loads((tmp_path / "repo" / "metadata" / "timestamp.json").read_text())["signed"]
    with serve(tmp_path / "repo") as srv:
        proc = run_device_script("micropython", SCRIPT, [str(meta), srv.url + "/metadata", str(int(time.time()))],
                                 tmp_path, timeout=60)
    line = [l for l in proc.stdout.splitlines() if l.startswith("TUF ")]
    assert line, proc.stdout + proc.stderr
    info = json.loads(line[0][4:])
    assert set(info) == {"root", "targets", "snapshot", "timestamp"}
    assert info["timestamp"][0] == ts["version"] and info["snapshot"][0] == ts["meta"]["snapshot.json"]["version"]
    assert isinstance(info["timestamp"][1], int) and info["timestamp"][1] > time.time()
