"""Resident heap of the security monitor, from the .mpy build (issue 12, round 3).

Builds the board's .mpy trees (host_tools/sim/build.py, the files a provisioned
board runs), then on the MicroPython VM at the default 256 KiB heap:
- base: gc.mem_alloc() after importing what a provisioned agent holds anyway
  (agent.main, agent.updates, the telemetry pipeline);
- import: + the monitor's modules as agent/main.py imports them;
- boot: + a Monitor with its flash event log, after its boot event;
- steady: after ticks that run one whole integrity scan of the factory slot
  (the app tree itself, with its manifest.json and slot.json) and build and send
  one posture report, with the event log holding entries;
- peak: the lowest gc.mem_free() seen after any tick (live heap between steps).
Every figure is after gc.collect(); "resident" = steady - base.

Run: .venv/bin/python bench/heap_security.py
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from host_tools import mpvm  # noqa: E402
from host_tools.sim import build as simbuild  # noqa: E402

VM = r"""
import gc, os, sys, time
tmp, slot, loader = sys.argv[1], sys.argv[2], sys.argv[3]
gc.collect()
from board.compat import ticks_ms
import agent.main
import agent.updates
import agent.telemetry.pipeline
import hashlib, json
gc.collect()
out = {"heap_total": gc.mem_free() + gc.mem_alloc()}
base = gc.mem_alloc()
out["base"] = base


class Board:
    def mounts(self):
        return {"state": tmp + "/state", "data": tmp + "/data", "slot_a": slot, "loader": loader}

    def time(self):
        return int(time.time())

    def reset_reason(self):
        return "power_on"


for d in ("/state", "/data"):
    try:
        os.mkdir(tmp + d)
    except OSError:
        pass
from agent.security import monitor as secmon
gc.collect()
out["import"] = gc.mem_alloc() - base
m = secmon.Monitor(Board(), "a", {}, None, None)
gc.collect()
out["construct"] = gc.mem_alloc() - base
m.boot("power_on", [])
gc.collect()
out["boot"] = gc.mem_alloc() - base
low = gc.mem_free()
t0 = ticks_ms()
ticks = 0
while m.scan is None and ticks < 2000:
    m.tick()
    ticks += 1
    gc.collect()
    low = min(low, gc.mem_free())
for i in range(20):
    secmon.events.emit("queue_drop", "warning", {"dropped": i, "total": i})
m.report()
gc.collect()
low = min(low, gc.mem_free())
out["steady"] = gc.mem_alloc() - base
out["peak"] = (out["heap_total"] - low) - base
out["scan_ticks"] = ticks
out["scan_ok"] = m.scan["ok"] if m.scan else None
out["scan_files"] = m.scan["files"] if m.scan else None
out["scan_max_ms"] = m.stats["scan_max_ms"]
out["head"] = m.log.head_n
out["modules"] = sorted([k for k in sys.modules if k.startswith("agent.security")])
# + the signed-commands half and the egress guard, after one command turn (as
# bench/heap_commands.py, here on top of the monitor: the modules both use count once)
had_netguard = "board.netguard" in sys.modules
import board.netguard
from agent.security import commands_boot, commands_inbox


class Agent:
    board = Board()
    ident = {"device_id": "pump-1"}
    tel = None

    class updates:
        model = "pump-v2"
        cfg = {}

    def report(self):
        pass


inbox = commands_inbox.CommandInbox(Agent(), ["broker:8883"])
inbox.receive(b'{"payload": "{}", "sig": {"keyid": "00", "sig": "00"}}')
before = list(sys.modules)
from agent.security.commands_run import AgentCommands
from updater.crypto import ed25519
del AgentCommands, ed25519
commands_boot.release_new(before)
inbox.tick()
gc.collect()
out["total"] = gc.mem_alloc() - base
out["netguard_in_base"] = had_netguard
print("RESULT " + json.dumps(out))
"""


def measure(heap: str = "256k") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        b = simbuild.build(Path(tmp))
        script = Path(tmp) / "heap.py"
        script.write_text(VM)
        work = Path(tmp) / "dev"
        work.mkdir()
        proc = mpvm.run_script(script, str(work), str(b.app), str(b.loader), paths=[b.firmware, b.app],
                               heap=heap, timeout=600)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        raise SystemExit(f"VM failed:\n{proc.stdout}{proc.stderr}")
    return json.loads(line[0][7:])


def main() -> None:
    r = measure()
    kib = 1024
    print(f"heap {r['heap_total'] // kib} KiB, .mpy build; base (agent's own imports) {r['base'] / kib:.1f} KiB")
    print(f"monitor code imported: {r['import'] / kib:.1f} KiB | after boot (log open, boot event): "
          f"{r['boot'] / kib:.1f} KiB (Monitor object alone: {(r['construct'] - r['import']) / kib:.1f} KiB)")
    print(f"resident at steady state (scan of {r['scan_files']} files done in {r['scan_ticks']} ticks, "
          f"ok={r['scan_ok']}, posture sent, {r['head']} events logged): {r['steady'] / kib:.1f} KiB "
          f"| budget ~12 KiB: {'ok' if r['steady'] <= 12.5 * kib else 'OVER'}")
    print(f"peak live between ticks: {r['peak'] / kib:.1f} KiB; longest scan step {r['scan_max_ms']} ms")
    print(f"security modules loaded at steady state: {', '.join(r['modules'])}")
    print(f"whole security agent resident (monitor + signed commands after one turn + egress guard"
          f"{', the guard already in the base' if r['netguard_in_base'] else ''}): {r['total'] / kib:.1f} KiB; "
          f"anchor: the issue's budget 24 KiB; ratio {r['total'] / (24 * kib):.2f}")


if __name__ == "__main__":
    main()
