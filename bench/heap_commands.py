"""Heap cost of the signed commands on the device VM, from the .mpy build.

Compiles agent/, updater/ and board/ with mpy-cross into a temporary tree,
then on MicroPython (-X heapsize=256k) imports what a provisioned agent holds
anyway (agent.main, the update agent, the telemetry pipeline) and prints
gc.mem_alloc() growth:
  resident   board.netguard (before agent.main, which imports it), the
             commands boot part (every board) and inbox (provisioned boards)
             and its object, and what stays after one command turn
             (interned names, the events module);
  transient  the verifier and runner while a turn runs (released after).

Run: .venv/bin/python bench/heap_commands.py     (about 20 s)
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from host_tools import mpvm  # noqa: E402
from host_tools.release.build import mpy_cross_path  # noqa: E402

VM_SCRIPT = r'''
import gc, sys, json
def alloc():
    gc.collect(); gc.collect()
    return gc.mem_alloc()
import board.compat
a0 = alloc()
import board.netguard
out = {"netguard": alloc() - a0}
import agent.main, agent.updates, agent.telemetry.pipeline
class Board:
    def mounts(self): return {"state": sys.argv[1]}
    def time(self): return 1800000000
    def read_pump(self): return {"state": "idle", "alarms": []}
class Updates:
    model = "pump-v2"
    cfg = {}
class Agent:
    board = Board(); updates = Updates(); ident = {"device_id": "pump-1"}; tel = None
    def report(self): pass
a1 = alloc()
from agent.security import commands_boot, commands_inbox  # the boot part stays resident (the guard's callback)
a2 = alloc()
inbox = commands_inbox.CommandInbox(Agent(), ["broker:8883"])
a3 = alloc()
inbox.receive(b'{"payload": "{}", "sig": {"keyid": "00", "sig": "00"}}')
before = list(sys.modules)
from agent.security.commands_run import AgentCommands
from updater.crypto import ed25519
a4 = alloc()
del AgentCommands, ed25519
commands_inbox.release_new(before)
inbox.tick()
a5 = alloc()
out.update({"inbox_module": a2 - a1, "inbox_object": a3 - a2, "transient_code": a4 - a3,
            "after_turn": a5 - a3, "stats": inbox.stats_map()})
print(json.dumps(out))
'''


def main() -> None:
    mc = mpy_cross_path()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "mpy"
        for pkg in ("agent", "updater", "board"):
            for p in (REPO / pkg).rglob("*.py"):
                rel = p.relative_to(REPO)
                if "__pycache__" in rel.parts or (len(rel.parts) == 2 and rel.name == "manifest.py"):
                    continue
                dst = out / rel.with_suffix(".mpy")
                dst.parent.mkdir(parents=True, exist_ok=True)
                subprocess.run([mc, "-o", str(dst), str(p)], check=True)
        script = Path(tmp) / "heap.py"
        script.write_text(VM_SCRIPT)
        state = Path(tmp) / "state"
        state.mkdir()
        proc = mpvm.run_script(script, str(state), paths=[out], heap="256k")
        if proc.returncode != 0:
            raise SystemExit(proc.stdout + proc.stderr)
        print(proc.stdout.strip())


if __name__ == "__main__":
    main()
