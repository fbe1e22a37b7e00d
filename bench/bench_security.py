"""Security agent benchmarks (issue 12). One line per figure: figure, anchor
measured in the same run on the same VM, ratio.

1. Event append (agent/security/eventlog.py: CBOR entry, SHA-256 chain, one
   frame appended to flash) on the MicroPython VM, on littlefs2 over a RAM block
   device and on the VM's host file system, vs one sealed telemetry record
   (agent/telemetry/cose.py, the anchor). Target: <= 2 ms.
2. Integrity scan of a slot (64 files, the factory slot's size) against its
   manifest, total CPU per scan (agent/security/posture.py Scanner, 30 ms steps) vs
   sha256 of the same bytes in memory; the longest step.
3. Heap of the monitor's modules compiled from source with the cold ones loaded
   (events, posture, logread), an event log and a scanner, and the most a
   running scan adds. The issue's figure (live heap of the whole security half at
   steady state, .mpy build, cold modules released) is bench/heap_security.py.
The VM runs with a 320 KiB heap: the 96 KiB RAM disk of figure 1 lives in it.

Run: .venv/bin/python bench/bench_security.py
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from host_tools import mpvm  # noqa: E402

VM = r"""
import gc, os, sys, time, hashlib, binascii, json
import vfs
from agent.telemetry import cose, records, cbor
base = sys.argv[1]
N = 300

class RAMBlock:
    def __init__(self, blocks, size=4096):
        self.size = size
        self.data = bytearray(blocks * size)
    def readblocks(self, n, buf, off=0):
        a = n * self.size + off
        buf[:] = self.data[a:a + len(buf)]
    def writeblocks(self, n, buf, off=None):
        if off is None:
            off = 0
        a = n * self.size + off
        self.data[a:a + len(buf)] = buf
    def ioctl(self, op, arg):
        if op == 4: return len(self.data) // self.size
        if op == 5: return self.size
        if op == 6: return 0

out = {}
gc.collect()
free0 = gc.mem_free()
from agent.security import events, posture
from agent.security.logread import load as EventLog
from agent.security.posture import Scanner
gc.collect()
out["heap_code"] = free0 - gc.mem_free()
idle_log = EventLog(base + "/idle")
for i in range(20):
    idle_log.append("boot", "info", {"i": i}, 1)
idle_scanner = Scanner(base)
gc.collect()
out["heap_idle"] = free0 - gc.mem_free()

bd = RAMBlock(24)
vfs.VfsLfs2.mkfs(bd)
vfs.mount(vfs.VfsLfs2(bd), "/lfs")

# 1. event append vs one sealed telemetry record
sample = {"hr": 72, "spo2": 98, "bp_sys": 118, "bp_dia": 76, "temp": 36.8,
          "pump": {"state": "running", "rate": 25.0, "vtbi": 100.0, "infused": 12.5, "alarms": []}}
topic = "medsentry/pump-0001/telemetry"
s = cose.Sealer(b"k" * 8, bytes(range(16)), bytes(range(1, 14)))
t0 = time.ticks_us()
for i in range(N):
    s.seal(1000 + i, records.encode(records.telemetry_record(sample, 1000 + i, 1764489600)), topic)
out["seal_us"] = time.ticks_diff(time.ticks_us(), t0) / N
for where, d in (("lfs", "/lfs/ev"), ("posix", base + "/ev")):
    log = EventLog(d)
    t0 = time.ticks_us()
    for i in range(N):
        log.append("tuf_failure", "warning", {"reason": "repository: bad signature", "i": i}, 1764489600 + i)
    out["append_us_" + where] = time.ticks_diff(time.ticks_us(), t0) / N
gc.collect()
f1 = gc.mem_free()

# 2. integrity scan of a 64-file slot (host file system: the slot does not fit a RAM disk in the heap)
slot = base + "/slot"
os.mkdir(slot)
os.mkdir(slot + "/agent")
ents = []
total = 0
for i in range(64):
    body = bytes([i & 255]) * (1400 + 37 * i)
    total += len(body)
    rel = "agent/m%02d.mpy" % i
    with open(slot + "/" + rel, "wb") as f:
        f.write(body)
    ents.append('{"path":"%s","sha256":"%s","size":%d,"stored":true}' % (
        rel, binascii.hexlify(hashlib.sha256(body).digest()).decode(), len(body)))
man = ('{"files":[' + ",".join(ents) + ']}').encode()
ents = None
with open(slot + "/manifest.json", "wb") as f:
    f.write(man)
with open(slot + "/slot.json", "w") as f:
    f.write(json.dumps({"manifest_sha256": binascii.hexlify(hashlib.sha256(man).digest()).decode()}))
man = None
gc.collect()
sc = Scanner(slot)
f2 = gc.mem_free()
low = f2
steps = 0
t0 = time.ticks_us()
while True:
    steps += 1
    done = sc.step(30)
    gc.collect()
    fr = gc.mem_free()
    if fr < low:
        low = fr
    if done:
        break
out["scan_us"] = time.ticks_diff(time.ticks_us(), t0)
out["scan_steps"] = steps
out["scan_max_step_ms"] = sc.max_step_ms
out["scan_ok"] = sc.result["ok"]
out["scan_bytes"] = total
out["heap_scan_peak_live"] = f2 - low
blob = bytes(4096)  # the same number of bytes, hashed from RAM in 4 KiB pieces
t0 = time.ticks_us()
h = hashlib.sha256()
for i in range(total // 4096):
    h.update(blob)
h.update(blob[:total % 4096])
h.digest()
out["sha_us"] = time.ticks_diff(time.ticks_us(), t0)
print("RESULT " + json.dumps(out))
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench.py"
        script.write_text(VM)
        proc = mpvm.run_script(script, tmp, paths=[REPO], heap="320k", timeout=600)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        raise SystemExit(f"VM failed:\n{proc.stdout}{proc.stderr}")
    r = json.loads(line[0][7:])
    for where in ("lfs", "posix"):
        a = r[f"append_us_{where}"]
        print(f"event append ({where}): {a / 1000:.3f} ms | anchor one sealed telemetry record "
              f"{r['seal_us'] / 1000:.3f} ms | ratio {a / r['seal_us']:.2f} | target <= 2 ms: "
              f"{'ok' if a <= 2000 else 'MISSED'}")
    print(f"integrity scan, {r['scan_bytes']} bytes in 64 files: {r['scan_us'] / 1000:.1f} ms CPU in "
          f"{r['scan_steps']} steps (longest {r['scan_max_step_ms']} ms) | anchor sha256 of the same bytes "
          f"{r['sha_us'] / 1000:.2f} ms | ratio {r['scan_us'] / max(r['sha_us'], 1):.1f} | ok={r['scan_ok']}")
    print(f"heap of the monitor's modules from source with the cold ones loaded: code {r['heap_code'] / 1024:.1f} KiB, "
          f"with an event log and a scanner {r['heap_idle'] / 1024:.1f} KiB, a running scan holds at most "
          f"{r['heap_scan_peak_live'] / 1024:.1f} KiB more (live, between steps) | the issue's resident figure: "
          f"bench/heap_security.py")


if __name__ == "__main__":
    main()
