"""Installer benchmarks on the MicroPython VM (sim flash, 256 KiB heap).

1. Install throughput of a 512 KiB package against its anchor measured in the
   same VM run: writing the same bytes to the same sim flash (littlefs) plus
   native sha256 over them.
2. Bytes read for a one-file patch, and for a full package whose other files
   are unchanged, against the size of the full package.
Prints one line per figure: figure, anchor, ratio.
"""
from __future__ import annotations

import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host_tools import mpvm  # noqa: E402
from host_tools.release.build import build_package  # noqa: E402
from host_tools.release.package import read_package  # noqa: E402
from host_tools.sim import image as simimage  # noqa: E402

VM = r'''
import sys, gc, json, time, hashlib
from board.sim import flash
from updater.install.installer import Installer
from updater.install.source import FileSource

img = flash.ImageFile(sys.argv[1])
for name, _, _ in img.parts:
    flash.mkfs(img.partition(name))
m = flash.mount_all(img)
jobs = json.loads(sys.argv[2])
out = {}
for label, pkg, sha, confirm in jobs:
    inst = Installer(m, "pump-v2")
    src = FileSource(pkg)
    w0 = img.counter.count
    t = time.ticks_us()
    man = inst.install(src, "pump-v2/x.mspk", sha)
    us = time.ticks_diff(time.ticks_us(), t)
    size = 0
    for e in man["files"]:
        size += e["size"]
    out[label] = {"us": us, "read": src.downloaded, "bytes": size, "writes": img.counter.count - w0}
    if confirm:
        inst.activate(0)
        from updater import bootstate, loader
        st = bootstate.read_state(m["state"])
        loader.decide(st, "soft", 1, m)
        bootstate.write_state(m["state"], st)
        inst.confirm(2)
# Anchor: the same number of bytes written to the same flash + native sha256.
n = out["full"]["bytes"]
chunk = bytes(range(256)) * 4
t = time.ticks_us()
h = hashlib.sha256()
with open("/data/anchor.bin", "wb") as f:
    left = n
    while left > 0:
        k = min(left, len(chunk))
        f.write(chunk[:k])
        h.update(chunk[:k])
        left -= k
out["anchor_us"] = time.ticks_diff(time.ticks_us(), t)
print("RESULT", json.dumps(out))
'''


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def main() -> None:
    rnd = random.Random(7)
    words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9))) for _ in range(400)]

    def text(n: int) -> bytes:  # compressible, like code and data tables
        out = bytearray()
        while len(out) < n:
            out += rnd.choice(words) + b" "
        return bytes(out[:n])

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        v1 = {"agent/main.py": b"def run(board, slot, trial=False):\n    pass\n"}
        v1.update({f"agent/mod{i:02d}.txt": text(32 * 1024) for i in range(16)})
        v2 = dict(v1)
        v2["agent/mod07.txt"] = text(32 * 1024)
        p1 = build_package(model="pump-v2", version="1.1.0", sources=[tree(d / "s1", v1) / "agent"], base_dir=d / "s1",
                           security_counter=2, out_dir=d, output=d / "v1.mspk", keep_py=(), source_date_epoch=0)
        p2 = build_package(model="pump-v2", version="1.2.0", sources=[tree(d / "s2", v2) / "agent"], base_dir=d / "s2",
                           security_counter=3, out_dir=d, output=d / "v2.mspk", keep_py=(), source_date_epoch=0)
        p2p = build_package(model="pump-v2", version="1.2.0", sources=[d / "s2" / "agent"], base_dir=d / "s2",
                            security_counter=3, out_dir=d, output=d / "v2p.mspk", keep_py=(), source_date_epoch=0,
                            base_package=p1.path)
        sha = {p: read_package(p).manifest_sha256 for p in (p1.path, p2.path, p2p.path)}
        results = {}
        for label, second in (("patch", p2p.path), ("full_reuse", p2.path)):
            img = d / f"{label}.img"
            simimage.create_blank(img, 4 * 1024 * 1024)
            jobs = [["full", str(p1.path), sha[p1.path], True], [label, str(second), sha[second], False]]
            script = d / "bench_vm.py"
            script.write_text(VM)
            proc = mpvm.run_script(script, str(img), json.dumps(jobs), paths=[mpvm.REPO_ROOT], timeout=600)
            if proc.returncode != 0:
                raise SystemExit(proc.stdout + proc.stderr)
            results.update(json.loads(proc.stdout.split("RESULT ", 1)[1]))
        full = results["full"]
        kib = full["bytes"] / 1024
        rate = kib / (full["us"] / 1e6)
        anchor = kib / (results["anchor_us"] / 1e6)
        print(f"install throughput: {rate:.0f} KiB/s ({kib:.0f} KiB, {full['writes']} flash ops); "
              f"anchor littlefs write + sha256 of the same bytes: {anchor:.0f} KiB/s; ratio {rate / anchor:.2f}")
        print(f"one-file patch: {results['patch']['read']} bytes read; anchor full package: {p2.length} bytes; "
              f"ratio {results['patch']['read'] / p2.length:.3f}")
        print(f"full package over a slot with the other files unchanged: {results['full_reuse']['read']} bytes read; "
              f"anchor full package: {p2.length} bytes; ratio {results['full_reuse']['read'] / p2.length:.3f}")


if __name__ == "__main__":
    main()
