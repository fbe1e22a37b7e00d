"""Benchmark of the device crypto (updater/crypto) on the MicroPython VM.

Run: .venv/bin/python bench/bench_crypto.py

One line per figure, each with the anchor measured in the same run and the
ratio:
  * per scheme: signature verification time on the MicroPython VM (heap 256k)
    vs the same verification with `cryptography` on CPython;
  * per scheme: smallest VM heap in which one verification still succeeds
    (bisected in 4 KiB steps) vs the 256 KiB device heap;
  * sha512 of 64 KiB on the VM (viper and pure) vs the VM's native sha256 of
    the same bytes, and in MB/s;
  * ed25519 verify with the pure SHA-512 forced (sha512.use_viper(False));
  * import cost (heap kept by importing verify + ed25519 + sha512 from .mpy),
    per-key cost (heap kept by one loaded ed25519 key), the module's base-point
    table (kept after the first verify), bytes allocated per verify.
The device modules run from .mpy files, as on the simulated board (the viper
SHA-512 kernel is compiled by the VM at import). The message is the canonical JSON of
a python-tuf targets metadata with 20 targets (what a TUF client verifies).
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
from host_tools.release.build import mpy_cross_path  # noqa: E402

HEAP = "256k"

VM_SCRIPT = r"""
import sys, json, gc, binascii, time, hashlib
mode = sys.argv[1]
if mode == "import":
    # Heap kept by the verifier modules, then by one ed25519 key, then by the
    # base-point table that the first verify builds.
    gc.collect()
    a0 = gc.mem_alloc()
    from updater.crypto import verify, ed25519, sha512
    gc.collect()
    a1 = gc.mem_alloc()
    with open(sys.argv[2]) as f:
        cases = json.load(f)
    c = [c for c in cases["sigs"] if c["name"] == "ed25519"][0]
    msg = binascii.unhexlify(cases["msg"])
    sig = binascii.unhexlify(c["sig"])
    del cases
    gc.collect()
    a2 = gc.mem_alloc()
    key = ed25519.Ed25519Key(binascii.unhexlify(c["key"]["keyval"]["public"]))
    gc.collect()
    a3 = gc.mem_alloc()
    assert key.verify(sig, msg)
    gc.collect()
    a4 = gc.mem_alloc()
    print("@@RESULT " + json.dumps({"import": a1 - a0, "key": a3 - a2, "table": a4 - a3,
                                    "viper": sha512.sha512_viper is not None}))
    raise SystemExit
from updater.crypto.verify import load_key
from updater.crypto import sha512 as sha512_mod
from updater.crypto.sha512 import sha512
with open(sys.argv[2]) as f:
    cases = json.load(f)
if mode == "time":
    # 64 KiB hashed as 16 updates of a 4 KiB buffer, the way the device streams.
    chunk = bytearray(4096)
    for i in range(4096):
        chunk[i] = (i * 131 + 7) & 0xFF
    out = {}
    for c in cases["sigs"]:
        key = load_key(c["key"])
        sig = binascii.unhexlify(c["sig"])
        msg = binascii.unhexlify(cases["msg"])
        assert key.verify(sig, msg)
        n = c["n"]
        gc.collect()
        t = time.ticks_us()
        for i in range(n):
            key.verify(sig, msg)
        out[c["name"]] = time.ticks_diff(time.ticks_us(), t) / n / 1000.0
        if c["name"] == "ed25519":
            sha512_mod.use_viper(False)
            gc.collect()
            t = time.ticks_us()
            for i in range(n):
                key.verify(sig, msg)
            out["ed25519_pure"] = time.ticks_diff(time.ticks_us(), t) / n / 1000.0
            sha512_mod.use_viper(True)
            # Loading the key (point decoding: one modular square root, and
            # the small-order check), what a fresh key costs before its
            # first verify (TUF keys are often used once per refresh).
            from updater.crypto.ed25519 import Ed25519Key
            raw = binascii.unhexlify(c["key"]["keyval"]["public"])
            gc.collect()
            t = time.ticks_us()
            for i in range(n):
                Ed25519Key(raw)
            out["ed25519_load"] = time.ticks_diff(time.ticks_us(), t) / n / 1000.0
    for name, cls, reps in (("sha512_64k", sha512, 3), ("sha512v_64k", sha512_mod.sha512_viper, 30)):
        if cls is None:
            continue
        gc.collect()
        t = time.ticks_us()
        for i in range(reps):
            h = cls()
            for j in range(16):
                h.update(chunk)
            h.digest()
        out[name] = time.ticks_diff(time.ticks_us(), t) / reps / 1000.0
    t = time.ticks_us()
    for i in range(30):
        h = hashlib.sha256()
        for j in range(16):
            h.update(chunk)
        h.digest()
    out["sha256_64k"] = time.ticks_diff(time.ticks_us(), t) / 30 / 1000.0
    print("@@RESULT " + json.dumps(out))
elif mode == "one":
    # Load key argv[3], then fill the heap with 512-byte ballast blocks until
    # only argv[4] KiB are free, then verify once. The smallest free heap in
    # which the verify still succeeds is its peak heap need (live data plus
    # what the GC cannot reclaim in time, fragmentation included).
    c = [c for c in cases["sigs"] if c["name"] == sys.argv[3]][0]
    msg = binascii.unhexlify(cases["msg"])
    del cases
    key = load_key(c["key"])
    sig = binascii.unhexlify(c["sig"])
    target = int(sys.argv[4]) * 1024
    ballast = []
    gc.collect()
    try:
        while gc.mem_free() > target + 512:
            ballast.append(bytearray(512))
        ok = key.verify(sig, msg)
    except MemoryError:
        ok = False
    ballast = None
    print("@@RESULT " + ("ok" if ok else "bad"))
elif mode == "alloc":
    # bytes allocated by one verify with the GC off (all of it is garbage
    # once the verify returns; shows the GC pressure, not the peak).
    out = {}
    msg = binascii.unhexlify(cases["msg"])
    for c in cases["sigs"]:
        key = load_key(c["key"])
        sig = binascii.unhexlify(c["sig"])
        gc.collect()
        base = gc.mem_alloc()
        gc.disable()
        key.verify(sig, msg)
        out[c["name"]] = gc.mem_alloc() - base
        gc.enable()
        if c["name"] == "ed25519":
            sha512_mod.use_viper(False)
            gc.collect()
            base = gc.mem_alloc()
            gc.disable()
            key.verify(sig, msg)
            out["ed25519_pure"] = gc.mem_alloc() - base
            gc.enable()
            sha512_mod.use_viper(True)
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


MPY_DIR: Path | None = None  # .mpy tree of updater/ (set by main)


def build_mpy(out: Path) -> Path:
    """updater/__init__.py and updater/crypto/*.py compiled as for the board."""
    import subprocess

    for src in [REPO / "updater" / "__init__.py", *sorted((REPO / "updater" / "crypto").glob("*.py"))]:
        rel = src.relative_to(REPO)
        dst = out / rel.with_suffix(".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([mpy_cross_path(), "-s", str(rel), "-o", str(dst), str(src)],
                       check=True)
    return out


def run_vm(args: list[str], heap: str) -> str | None:
    paths = [MPY_DIR] if MPY_DIR is not None else [REPO]
    proc = mpvm.run_script(args[0], *args[1:], paths=paths, heap=heap, timeout=300, cwd=REPO)
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

    global MPY_DIR
    with tempfile.TemporaryDirectory() as tmp:
        MPY_DIR = build_mpy(Path(tmp) / "mpy")
        script = Path(tmp) / "bench_crypto_vm.py"
        script.write_text(VM_SCRIPT)
        data = Path(tmp) / "cases.json"
        data.write_text(json.dumps({"msg": msg.hex(), "sigs": sigs}))
        res = run_vm([str(script), "time", str(data)], HEAP)
        if res is None:
            raise SystemExit("the VM benchmark failed")
        vm = json.loads(res)
        print(f"message: canonical JSON of a python-tuf targets metadata, {len(msg)} bytes")
        for name in signers:
            print(
                f"verify {name}: VM {vm[name]:.2f} ms (heap {HEAP}); anchor cryptography on CPython "
                f"{anchors[name]:.3f} ms; ratio {vm[name] / anchors[name]:.0f}x"
            )
        print(
            f"verify ed25519 with the pure SHA-512 forced (use_viper(False)): VM {vm['ed25519_pure']:.2f} ms; "
            f"anchor cryptography on CPython {anchors['ed25519']:.3f} ms; "
            f"ratio {vm['ed25519_pure'] / anchors['ed25519']:.0f}x"
        )
        print(
            f"load an ed25519 key (decode + small-order check, before its first verify): VM "
            f"{vm['ed25519_load']:.2f} ms; anchor the ed25519 verify above {vm['ed25519']:.2f} ms; "
            f"ratio {vm['ed25519_load'] / vm['ed25519']:.2f}"
        )
        imp = json.loads(run_vm([str(script), "import", str(data)], HEAP) or "{}")
        if imp:
            print(f"heap kept by importing verify + ed25519 + sha512 (.mpy, viper {'on' if imp['viper'] else 'OFF'}): "
                  f"{imp['import'] / 1024:.1f} KiB; anchor device heap 256 KiB; ratio {imp['import'] / 262144:.3f}")
            print(f"heap kept per loaded ed25519 key: {imp['key']} bytes; base-point table kept after the first "
                  f"verify: {imp['table'] / 1024:.1f} KiB; anchor device heap 256 KiB; "
                  f"ratio {(imp['key'] + imp['table']) / 262144:.3f}")
        def min_free(name: str) -> int:
            lo, hi = 0, 128  # KiB of free heap: lo assumed to fail, hi must work
            if run_vm([str(script), "one", str(data), name, str(hi)], HEAP) != "ok":
                raise SystemExit(f"{name}: verify fails even with {hi} KiB free")
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if run_vm([str(script), "one", str(data), name, str(mid)], HEAP) == "ok":
                    hi = mid
                else:
                    lo = mid
            return hi

        for name in signers:
            need = min_free(name)
            print(f"peak heap of one {name} verify (smallest free heap it succeeds in, key already loaded): "
                  f"{need} KiB; anchor device heap 256 KiB; ratio {need / 256:.3f}")
        res = run_vm([str(script), "alloc", str(data)], "16M")
        if res is not None:
            alloc = json.loads(res)
            for name in signers:
                print(f"bytes allocated by one {name} verify with GC off (garbage, GC pressure): "
                      f"{alloc[name] // 1024} KiB; anchor device heap 256 KiB; ratio {alloc[name] / 262144:.1f}")
            print(f"bytes allocated by one ed25519 verify with the pure SHA-512 forced: "
                  f"{alloc['ed25519_pure'] // 1024} KiB; anchor device heap 256 KiB; "
                  f"ratio {alloc['ed25519_pure'] / 262144:.1f}")
        mbs = 65.536 / vm["sha256_64k"]
        for key, label in (("sha512v_64k", "viper"), ("sha512_64k", "pure")):
            if key in vm:
                print(
                    f"sha512 ({label}) of 64 KiB on VM: {vm[key]:.2f} ms = {65.536 / vm[key]:.1f} MB/s; "
                    f"anchor native sha256 of the same bytes on VM {vm['sha256_64k']:.2f} ms = {mbs:.0f} MB/s; "
                    f"ratio {vm[key] / vm['sha256_64k']:.1f}x"
                )


if __name__ == "__main__":
    main()
