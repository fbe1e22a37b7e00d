"""Benchmark of the device crypto (updater/crypto) on the MicroPython VM.

Run: .venv/bin/python bench/bench_crypto.py

One line per figure, each with the anchor measured in the same run and the
ratio:
  * per scheme: signature verification time on the MicroPython VM (heap 256k),
    SHA-512 by the viper code and forced to the pure fallback, vs the same
    verification with `cryptography` on CPython;
  * sha512 (viper and pure) of 64 KiB on the VM vs the VM's native sha256;
  * import cost (heap kept, time) and per-key cost (heap kept per loaded key,
    load time, one-time base-point tables) vs the 256 KiB device heap;
  * per scheme: smallest VM heap (-X heapsize, bisected in 4 KiB steps) in
    which import + key load + one verification succeed vs 256 KiB;
  * bytes allocated by one verification (GC off) vs the 256 KiB heap.
The message is the canonical JSON of a python-tuf targets metadata with 20
targets (what a TUF client actually verifies).
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding  # noqa: E402
from securesystemslib.signer import CryptoSigner  # noqa: E402
from tuf.api.metadata import Metadata, TargetFile, Targets  # noqa: E402

from host_tools import mpvm  # noqa: E402

HEAP = "256k"

VM_SCRIPT = r"""
import sys, json, gc, binascii, time, hashlib
mode = sys.argv[1]
with open(sys.argv[2]) as f:
    cases = json.load(f)
msg = binascii.unhexlify(cases["msg"])
backend = sys.argv[3] if len(sys.argv) > 3 else "viper"


def best_ms(fn, n):
    # the fastest of n runs: the machine is shared, the minimum is the cost
    best = None
    for i in range(n):
        t = time.ticks_us()
        fn()
        dt = time.ticks_diff(time.ticks_us(), t)
        if best is None or dt < best:
            best = dt
    return best / 1000.0


if mode == "import":
    # heap and time of importing the verifier and every scheme module, then
    # per scheme: heap kept by one loaded key and the time to load it
    out = {}
    gc.collect()
    a0 = gc.mem_alloc()
    t = time.ticks_us()
    from updater.crypto import verify, ed25519, p256, rsa, der, streaming, sha512
    out["import_ms"] = time.ticks_diff(time.ticks_us(), t) / 1000.0
    gc.collect()
    out["import_bytes"] = gc.mem_alloc() - a0
    for c in cases["sigs"]:
        gc.collect()
        a0 = gc.mem_alloc()
        t = time.ticks_us()
        key = verify._load(c["key"]["keytype"], c["key"]["scheme"], c["key"]["keyval"]["public"])
        dt = time.ticks_diff(time.ticks_us(), t) / 1000.0
        gc.collect()
        out["key_" + c["name"]] = [gc.mem_alloc() - a0, dt]
        a0 = gc.mem_alloc()
        key.verify(binascii.unhexlify(c["sig"]), msg)  # first verify builds the base-point tables
        gc.collect()
        out["first_" + c["name"]] = gc.mem_alloc() - a0
        key = None
    print("@@RESULT " + json.dumps(out))
    raise SystemExit
from updater.crypto.verify import load_key
from updater.crypto import sha512
assert sha512.use_viper(backend == "viper") == (backend == "viper"), "viper not available"
if mode == "time":
    # 64 KiB hashed as 16 updates of a 4 KiB buffer, the way the device streams.
    chunk = bytearray(4096)
    for i in range(4096):
        chunk[i] = (i * 131 + 7) & 0xFF
    out = {}
    for c in cases["sigs"]:
        key = load_key(c["key"])
        sig = binascii.unhexlify(c["sig"])
        assert key.verify(sig, msg)
        gc.collect()
        out[c["name"]] = best_ms(lambda: key.verify(sig, msg), c["n"])
    gc.collect()

    def h512():
        h = sha512.sha512()
        for j in range(16):
            h.update(chunk)
        h.digest()

    def h256():
        h = hashlib.sha256()
        for j in range(16):
            h.update(chunk)
        h.digest()

    out["sha512_64k"] = best_ms(h512, 5)
    out["sha256_64k"] = best_ms(h256, 20)
    print("@@RESULT " + json.dumps(out))
elif mode == "one":
    # With the VM heap given by -X heapsize: import, load the key, verify
    # once. The smallest heapsize that still succeeds is the figure.
    c = [c for c in cases["sigs"] if c["name"] == sys.argv[4]][0]
    del cases
    try:
        key = load_key(c["key"])
        ok = key.verify(binascii.unhexlify(c["sig"]), msg)
    except MemoryError:
        ok = False
    print("@@RESULT " + ("ok" if ok else "bad"))
elif mode == "alloc":
    # bytes allocated by one verify with the GC off (all of it is garbage
    # once the verify returns; shows the GC pressure, not the peak).
    out = {}
    for c in cases["sigs"]:
        key = load_key(c["key"])
        sig = binascii.unhexlify(c["sig"])
        key.verify(sig, msg)
        gc.collect()
        base = gc.mem_alloc()
        gc.disable()
        key.verify(sig, msg)
        out[c["name"]] = gc.mem_alloc() - base
        gc.enable()
    print("@@RESULT " + json.dumps(out))
"""


def tuf_message() -> bytes:
    exp = datetime(2030, 1, 1, tzinfo=timezone.utc)
    t = Targets(expires=exp)
    for i in range(20):
        path = f"firmware/pump-model-a/1.{i}.0/app.mpy"
        t.targets[path] = TargetFile.from_data(path, bytes([i]) * 100, ["sha256", "sha512"])
    return Metadata(t).signed_bytes


def cpython_time(fn, min_seconds: float = 0.3) -> float:
    n = 0
    t0 = time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt > min_seconds:
            return dt / n * 1000.0


def run_vm(args: list[str], heap: str) -> str | None:
    proc = mpvm.run_script(args[0], *args[1:], paths=[REPO], heap=heap, timeout=120, cwd=REPO)
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT "):
            return line[len("@@RESULT "):]
    if args[1] == "time":
        sys.stderr.write(proc.stdout + proc.stderr)
    return None


def main() -> None:
    msg = tuf_message()
    signers = {
        "ed25519": CryptoSigner.generate_ed25519(),
        "ecdsa-p256": CryptoSigner.generate_ecdsa(),
        "rsa-pss-2048": CryptoSigner.generate_rsa(size=2048),
        "rsa-pss-3072": CryptoSigner.generate_rsa(size=3072),
    }
    sigs = []
    anchors = {}
    for name, s in signers.items():
        sig = bytes.fromhex(s.sign(msg).signature)
        sigs.append({"name": name, "key": s.public_key.to_dict(), "sig": sig.hex(), "n": 20})
        pub = s._private_key.public_key()  # noqa: SLF001 - the same key, verified natively
        if name == "ed25519":
            anchors[name] = cpython_time(lambda pub=pub, sig=sig: pub.verify(sig, msg))
        elif name == "ecdsa-p256":
            anchors[name] = cpython_time(lambda pub=pub, sig=sig: pub.verify(sig, msg, ec.ECDSA(hashes.SHA256())))
        else:
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
            anchors[name] = cpython_time(lambda pub=pub, sig=sig, pss=pss: pub.verify(sig, msg, pss, hashes.SHA256()))

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench_crypto_vm.py"
        script.write_text(VM_SCRIPT)
        data = Path(tmp) / "cases.json"
        data.write_text(json.dumps({"msg": msg.hex(), "sigs": sigs}))
        report(script, data, msg, list(signers), anchors)


def report(script: Path, data: Path, msg: bytes, names: list[str], anchors: dict[str, float]) -> None:
    vm = {}
    for backend in ("viper", "pure"):
        res = run_vm([str(script), "time", str(data), backend], HEAP)
        if res is None:
            raise SystemExit("the VM benchmark failed")
        vm[backend] = json.loads(res)
    print(f"message: canonical JSON of a python-tuf targets metadata, {len(msg)} bytes; "
          "VM times are the fastest of n runs (shared machine)")
    for name in names:
        for backend in ("viper", "pure"):
            t = vm[backend][name]
            print(f"verify {name} (sha512 {backend}): VM {t:.2f} ms (heap {HEAP}); anchor cryptography on CPython "
                  f"{anchors[name]:.3f} ms; ratio {t / anchors[name]:.0f}x")
    for backend in ("viper", "pure"):
        t512, t256 = vm[backend]["sha512_64k"], vm[backend]["sha256_64k"]
        print(f"sha512 ({backend}) of 64 KiB on VM: {t512:.2f} ms = {65.536 / t512:.1f} MB/s; anchor native sha256 "
              f"of the same bytes on VM {t256:.2f} ms = {65.536 / t256:.0f} MB/s; ratio {t512 / t256:.1f}x")
    imp = json.loads(run_vm([str(script), "import", str(data)], "16M") or "{}")
    if imp:
        print(f"import of verify + every scheme module on VM: {imp['import_bytes'] // 1024} KiB heap kept, "
              f"{imp['import_ms']:.1f} ms; anchor device heap 256 KiB; ratio {imp['import_bytes'] / 262144:.3f}")
        for name in names:
            kb, ms = imp["key_" + name]
            print(f"per-key cost {name}: {kb} bytes kept per loaded key, load {ms:.2f} ms; one-time base tables "
                  f"kept after the first verify {imp['first_' + name]} bytes; anchor device heap 256 KiB; "
                  f"ratio {(kb + imp['first_' + name]) / 262144:.3f}")

    def min_heap(name: str, backend: str) -> int:
        lo, hi = 8, 256  # KiB of VM heap: lo assumed to fail, hi must work
        if run_vm([str(script), "one", str(data), backend, name], f"{hi}k") != "ok":
            raise SystemExit(f"{name}: verify fails even with a {hi} KiB heap")
        while hi - lo > 4:
            mid = (lo + hi) // 2
            if run_vm([str(script), "one", str(data), backend, name], f"{mid}k") == "ok":
                hi = mid
            else:
                lo = mid
        return hi

    for name in names:
        need = min_heap(name, "viper")
        print(f"smallest VM heap in which import + key load + one {name} verify succeeds (4 KiB steps): "
              f"{need} KiB; anchor device heap 256 KiB; ratio {need / 256:.3f}")
    for backend in ("viper", "pure"):
        res = run_vm([str(script), "alloc", str(data), backend], "16M")
        if res is not None:
            alloc = json.loads(res)
            for name in names:
                print(f"bytes allocated by one {name} verify (sha512 {backend}) with GC off (garbage, GC pressure): "
                      f"{alloc[name] // 1024} KiB; anchor device heap 256 KiB; ratio {alloc[name] / 262144:.2f}")

if __name__ == "__main__":
    main()
