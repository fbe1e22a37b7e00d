"""Resident heap of the security half of the agent, from the .mpy build (issue 12).

Builds the board's .mpy trees (host_tools/sim/build.py, the files a provisioned
board runs), then on the MicroPython VM at the default 256 KiB heap:
- netguard: the egress guard alone (imported first, as the board ROM does);
- base: gc.mem_alloc() after importing what a provisioned agent holds anyway
  (agent.main, agent.updates, the telemetry pipeline) and after one update
  check's code was imported and released, as every provisioned agent does
  from its first check on (its names stay interned with or without the
  security half);
- import: + the monitor's modules as agent/main.py imports them;
- boot: + a Monitor with its flash event log, after its boot event;
- steady: after ticks that run one whole integrity scan of the factory slot
  (the app tree itself, with its manifest.json and slot.json) and build and send
  one posture report, with the event log holding entries;
- peak: the lowest gc.mem_free() seen after any tick (live heap between steps);
- total: + the signed-commands inbox after one command turn.
Every figure is after gc.collect(). The whole security half = total + netguard.
A second run loads the security half before any update check ("cold"): the
names it interns then push MicroPython's qstr table into its next pool (pools
double), which the first update check would otherwise pay for.
The figures move by a few KiB with the heap's layout (where the qstr chunks and
the released code fell): a gc.collect() before the update check's import gave
23.2 KiB for `total` against 28.3 here (2026-12-04).

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
a0 = gc.mem_alloc()
import board.netguard  # the egress guard alone (agent.main imports it)
gc.collect()
netguard = gc.mem_alloc() - a0
from board.compat import ticks_ms
import agent.main
import agent.updates
import agent.telemetry.pipeline
import hashlib, json
# One update check's code, loaded and released as every provisioned agent does
# from its first check on (agent/updates.py): its names stay interned, as they
# do in the agent with or without the security half.
if sys.argv[4] == "checked":
    import updater.tuf.updater, updater.tuf.fetcher, updater.crypto.ed25519
    from agent import release_modules
    from updater import tuf
    release_modules(tuf.UNLOADABLE)
    del release_modules, tuf
# The stand-ins for the board and the agent, which exist with or without the
# security half: made before the baseline, so that they are not charged to it.
class Board:
    def mounts(self):
        return {"state": tmp + "/state", "data": tmp + "/data", "slot_a": slot, "loader": loader}

    def time(self):
        return int(time.time())

    def reset_reason(self):
        return "power_on"


class Agent:
    board = Board()
    ident = {"device_id": "pump-1"}
    tel = None

    class updates:
        model = "pump-v2"
        cfg = {}

    def report(self):
        pass


agent_obj = Agent()
gc.collect()
out = {"heap_total": gc.mem_free() + gc.mem_alloc(), "netguard": netguard}
base = gc.mem_alloc()
out["base"] = base

for d in ("/state", "/data"):
    try:
        os.mkdir(tmp + d)
    except OSError:
        pass
from agent.security import monitor as secmon
gc.collect()
out["import"] = gc.mem_alloc() - base
m = secmon.Monitor(agent_obj.board, "a", {}, None, None)
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
# The boot part as agent/main.py runs it on a provisioned board: the egress
# allow-list armed (commands_boot stays: it holds the guard's callback).
from agent.security import commands_boot
commands_boot.arm_egress({"host": "broker", "port": 8883}, {}, tmp + "/state")
from agent.security import commands_inbox

inbox = commands_inbox.CommandInbox(agent_obj, ["broker:8883"])
inbox.receive(b'{"payload": "{}", "sig": {"keyid": "00", "sig": "00"}}')
before = list(sys.modules)
from agent.security.commands_run import AgentCommands
from updater.crypto import ed25519
del AgentCommands, ed25519
commands_inbox.release_new(before)
inbox.tick()
gc.collect()
out["total"] = gc.mem_alloc() - base
out["netguard_in_base"] = had_netguard
print("RESULT " + json.dumps(out))
"""


def measure(heap: str = "256k", order: str = "checked") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        b = simbuild.build(Path(tmp))
        script = Path(tmp) / "heap.py"
        script.write_text(VM)
        work = Path(tmp) / "dev"
        work.mkdir()
        proc = mpvm.run_script(script, str(work), str(b.app), str(b.loader), order, paths=[b.firmware, b.app],
                               heap=heap, timeout=600)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        raise SystemExit(f"VM failed:\n{proc.stdout}{proc.stderr}")
    return json.loads(line[0][7:])


def main() -> None:
    r = measure()
    cold = measure(order="cold")
    kib = 1024
    print(f"heap {r['heap_total'] // kib} KiB, .mpy build; base (agent's own imports, one update check's code "
          f"loaded and released) {r['base'] / kib:.1f} KiB")
    print(f"monitor code imported: {r['import'] / kib:.1f} KiB | after boot (log open, boot event): "
          f"{r['boot'] / kib:.1f} KiB (Monitor object alone: {(r['construct'] - r['import']) / kib:.1f} KiB)")
    print(f"resident at steady state (scan of {r['scan_files']} files done in {r['scan_ticks']} ticks, "
          f"ok={r['scan_ok']}, posture sent, {r['head']} events logged): {r['steady'] / kib:.1f} KiB")
    print(f"peak live between ticks: {r['peak'] / kib:.1f} KiB; longest scan step {r['scan_max_ms']} ms")
    print(f"security modules loaded at steady state: {', '.join(r['modules'])}")
    whole = r["total"] + r["netguard"]
    print(f"charged cold (the security half loaded before any update check, so the qstr pool's next doubling "
          f"falls on it): {(cold['total'] + cold['netguard']) / kib:.1f} KiB")
    print(f"whole security agent, live heap more than the same agent without it (monitor at steady state + "
          f"signed commands after one turn {r['total'] / kib:.1f} KiB + egress guard {r['netguard'] / kib:.1f} KiB): "
          f"{whole / kib:.1f} KiB; anchor: the issue's budget 24 KiB; ratio {whole / (24 * kib):.2f}")


if __name__ == "__main__":
    main()
