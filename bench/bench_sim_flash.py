"""Sim flash throughput: littlefs file writes on the simulated board's flash
against raw block writes (same flush per write) to the same image file, both
in the same MicroPython VM in the same run. Also VM boot to first status.

Prints one line per figure: figure, anchor, ratio.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host_tools import mpvm  # noqa: E402
from host_tools.sim import image as simimage  # noqa: E402

VM_SCRIPT = r'''
import sys, time, vfs
from board.sim import flash
path = sys.argv[1]
img = flash.ImageFile(path)
part = img.partition("data")
flash.mkfs(part)
fs = flash.open_fs(part, "data")
vfs.mount(fs, "/data")
chunk = bytes(range(256)) * 16
N = 128  # 512 KiB
t = time.ticks_us()
with open("/data/big.bin", "wb") as f:
    for i in range(N):
        f.write(chunk)
lfs_us = time.ticks_diff(time.ticks_us(), t)
writes = img.counter.count
# Anchor: raw 4 KiB block writes with a flush each, same file, same VM.
raw = img.partition("slot_b")
t = time.ticks_us()
for i in range(N):
    raw.writeblocks(i % raw.nblocks, chunk, 0)
raw_us = time.ticks_diff(time.ticks_us(), t)
print("RESULT", lfs_us, raw_us, writes)
'''


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        img = Path(d) / "f.img"
        simimage.create_blank(img, 2 * 1024 * 1024)
        script = Path(d) / "bench.py"
        script.write_text(VM_SCRIPT)
        proc = mpvm.run_script(script, str(img), paths=[mpvm.REPO_ROOT], timeout=300)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        lfs_us, raw_us, writes = (int(x) for x in proc.stdout.split("RESULT")[1].split())
        kib = 512
        lfs_rate = kib / (lfs_us / 1e6)
        raw_rate = kib / (raw_us / 1e6)
        print(f"littlefs write on sim flash: {lfs_rate:.0f} KiB/s; anchor raw block writes: {raw_rate:.0f} KiB/s; "
              f"ratio {lfs_rate / raw_rate:.2f} ({writes} flash ops for {kib} KiB)")
        # VM start to first line of Python, against CPython's own start.
        nop = Path(d) / "nop.py"
        nop.write_text("pass")
        t = time.perf_counter()
        for _ in range(10):
            mpvm.run_script(nop, paths=[mpvm.REPO_ROOT])
        vm = (time.perf_counter() - t) / 10
        t = time.perf_counter()
        for _ in range(10):
            subprocess.run([sys.executable, "-S", "-c", "pass"], check=True)
        cp = (time.perf_counter() - t) / 10
        print(f"MicroPython VM start: {vm * 1000:.1f} ms; anchor CPython -S start: {cp * 1000:.1f} ms; ratio {vm / cp:.2f}")


if __name__ == "__main__":
    main()
