"""Packages: format, reproducibility, patches, SBOM, and streaming decompression
on the real MicroPython VM under a small heap."""
from __future__ import annotations

import hashlib
import json
import os
import sys
import zlib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_release_support import write_sources  # noqa: E402

from host_tools import mpvm  # noqa: E402
from host_tools.release.build import build_package  # noqa: E402
from host_tools.release.errors import BuildError, PackageFormatError  # noqa: E402
from host_tools.release.package import MAGIC, WBITS, read_package  # noqa: E402


def build(src: Path, out: Path, version="1.0.0", counter=3, **kw):
    return build_package(
        model="pump-v2", version=version, sources=[src], base_dir=src,
        security_counter=counter, out_dir=out, **kw,
    )


def test_same_inputs_give_identical_bytes(tmp_path):
    a = write_sources(tmp_path / "a")
    b = write_sources(tmp_path / "checkout-elsewhere" / "b")  # different absolute path
    os.utime(b / "main.py", (1, 1))  # different mtimes do not matter either
    r1 = build(a, tmp_path / "o1")
    r2 = build(b, tmp_path / "o2")
    assert r1.path.read_bytes() == r2.path.read_bytes()
    assert r1.sbom_path.read_bytes() == r2.sbom_path.read_bytes()
    r3 = build(a, tmp_path / "o3", source_date_epoch=1_700_000_000)
    assert r3.path.read_bytes() != r1.path.read_bytes()  # only the SBOM time differs
    assert read_package(r3.path).manifest["files"] == read_package(r1.path).manifest["files"]


def test_manifest_lists_every_file_with_hash_size_and_metadata(tmp_path):
    src = write_sources(tmp_path / "src")
    r = build(src, tmp_path / "out", also_compatible=["pump-v2b"], min_base_version="0.9.0")
    info = read_package(r.path)
    m = info.manifest
    assert [f["path"] for f in m["files"]] == ["app/__init__.mpy", "app/conf.json", "app/hello.mpy", "main.py"]
    assert m["version"] == "1.0.0" and m["security_counter"] == 3 and m["kind"] == "full"
    assert m["compatible_models"] == ["pump-v2", "pump-v2b"] and m["min_base_version"] == "0.9.0"
    assert m["compression"] == {"method": "zlib", "wbits": WBITS}
    for f in m["files"]:
        content = info.file(f["path"])
        assert len(content) == f["size"] and hashlib.sha256(content).hexdigest() == f["sha256"]
    assert info.file("app/hello.mpy")[:1] == b"M"  # mpy-cross output
    assert info.file("main.py") == (src / "main.py").read_bytes()  # kept as source
    assert r.path.read_bytes()[:4] == MAGIC
    # each blob is a zlib stream with a 1 KiB window (CINFO = wbits - 8)
    blob = info.blob(m["files"][0])
    assert blob[0] >> 4 == WBITS - 8 and (blob[0] << 8 | blob[1]) % 31 == 0


def test_sbom_is_cyclonedx_with_every_file(tmp_path):
    src = write_sources(tmp_path / "src")
    r = build(src, tmp_path / "out")
    sbom = json.loads(r.sbom_path.read_text())
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.6"
    assert sbom["metadata"]["component"]["name"] == "medsentry-pump-v2"
    files = {c["name"]: c["hashes"][0]["content"] for c in sbom["components"] if c["type"] == "file"}
    manifest = read_package(r.path).manifest
    assert files == {f["path"]: f["sha256"] for f in manifest["files"]}
    assert read_package(r.path).sbom() == r.sbom_path.read_bytes()
    assert manifest["sbom"]["sha256"] == hashlib.sha256(r.sbom_path.read_bytes()).hexdigest()


def test_patch_carries_only_changed_files_but_lists_all(tmp_path):
    src = write_sources(tmp_path / "src", variant="a")
    full = build(src, tmp_path / "out")
    write_sources(src, variant="b")  # only app/hello.py changes
    patch = build(src, tmp_path / "out", version="1.0.1", counter=4, base_package=full.path)
    m = read_package(patch.path).manifest
    assert m["kind"] == "patch" and m["base_version"] == "1.0.0" and m["min_base_version"] == "1.0.0"
    stored = {f["path"] for f in m["files"] if f["stored"]}
    assert stored == {"app/hello.mpy"}
    assert [f["path"] for f in m["files"]] == [f["path"] for f in read_package(full.path).manifest["files"]]
    assert patch.length < full.length
    assert patch.path.name == "pump-v2-1.0.1-patch.mspk"
    with pytest.raises(BuildError, match="not below"):
        build(src, tmp_path / "out", version="1.0.0", counter=4, base_package=full.path)


def test_build_errors(tmp_path):
    src = write_sources(tmp_path / "src")
    (src / "broken.py").write_text("def f(:\n")
    with pytest.raises(BuildError, match="mpy-cross failed on broken.py"):
        build(src, tmp_path / "out")
    (src / "broken.py").unlink()
    with pytest.raises(BuildError, match="not under the base"):
        build_package(model="pump-v2", version="1.0.0", sources=[src], base_dir=src / "app",
                      security_counter=1, out_dir=tmp_path / "o")
    with pytest.raises(PackageFormatError):
        read_package(tmp_path / "nope.mspk")
    (tmp_path / "junk.mspk").write_bytes(b"PK\x03\x04 not ours" * 8)
    with pytest.raises(PackageFormatError, match="bad magic"):
        read_package(tmp_path / "junk.mspk")


# A minimal streaming reader, as the device installer will do it: header,
# manifest, then each file through a length-limited stream into DeflateIO,
# hashed and written chunk by chunk with one preallocated buffer.
VM_READER = r'''
import sys, io, json, hashlib, struct, binascii, deflate, os, gc

class Limited(io.IOBase):
    def __init__(self, f, n):
        self.f = f
        self.n = n
    def readinto(self, buf):
        if self.n <= 0:
            return 0
        mv = memoryview(buf)
        if len(mv) > self.n:
            mv = mv[:self.n]
        k = self.f.readinto(mv)
        self.n -= k
        return k

pkg, out = sys.argv[1], sys.argv[2]
f = open(pkg, "rb")
magic, fmt, flags, res, mlen, mhash = struct.unpack(">4sBBHI32s", f.read(44))
assert magic == b"MSPK" and fmt == 1
mb = f.read(mlen)
assert hashlib.sha256(mb).digest() == mhash
m = json.loads(mb)
del mb
buf = bytearray(512)
gc.collect()
low = gc.mem_free()
for e in m["files"]:
    parts = e["path"].split("/")
    d = out
    for p in parts[:-1]:
        d = d + "/" + p
        try:
            os.mkdir(d)
        except OSError:
            pass
    z = deflate.DeflateIO(Limited(f, e["csize"]), deflate.ZLIB)
    h = hashlib.sha256()
    n = 0
    w = open(out + "/" + e["path"], "wb")
    while True:
        k = z.readinto(buf)
        if not k:
            break
        h.update(memoryview(buf)[:k])
        w.write(memoryview(buf)[:k])
        n += k
    w.close()
    ok = n == e["size"] and binascii.hexlify(h.digest()).decode() == e["sha256"]
    low = min(low, gc.mem_free())
    print("FILE", e["path"], n, "OK" if ok else "BAD")
print("MINFREE", low)
'''


def test_micropython_streams_and_runs_the_package(tmp_path):
    src = write_sources(tmp_path / "src")
    # a larger, compressible file: far more than the 1 KiB window and the 512 B buffer
    rows = [{"i": i, "name": "drug-%03d" % (i % 97), "max_rate": i * 7 % 1000} for i in range(1500)]
    (src / "app" / "drugs.json").write_text(json.dumps(rows))
    size = (src / "app" / "drugs.json").stat().st_size
    assert size > 60_000
    r = build(src, tmp_path / "out")
    info = read_package(r.path)
    assert r.length < size  # compressed
    script = tmp_path / "reader.py"
    script.write_text(VM_READER)
    out = tmp_path / "slot"
    out.mkdir()
    proc = mpvm.run_script(script, str(r.path), str(out), heap="64k", timeout=60)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lines = [ln.split() for ln in proc.stdout.splitlines()]
    files = {ln[1]: (int(ln[2]), ln[3]) for ln in lines if ln[0] == "FILE"}
    assert files == {f["path"]: (f["size"], "OK") for f in info.manifest["files"]}
    for f in info.manifest["files"]:
        assert (out / f["path"]).read_bytes() == info.file(f["path"])
    # the extracted slot runs on MicroPython (compiled .mpy modules + main.py)
    run = mpvm.run_script(out / "main.py", paths=[out], timeout=30)
    assert run.returncode == 0 and run.stdout.strip() == "hello pump a", run.stderr
    # no .py of compiled modules in the slot: it really imported the .mpy
    assert not (out / "app" / "hello.py").exists()
    # CPython's zlib agrees with the recorded window (the device allocates 2**wbits)
    zlib.decompress(info.blob(info.manifest["files"][0]), WBITS)


# ---------------------------------------------------------------- fuzzing
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from host_tools.release.errors import PackageError  # noqa: E402
from host_tools.release.package import HEADER, canonical_json, verify_package_bytes  # noqa: E402

_VALID: dict[str, bytes] = {}


def _valid_package(tmp_path_factory) -> bytes:
    if "pkg" not in _VALID:
        d = tmp_path_factory.mktemp("fuzz")
        _VALID["pkg"] = build(write_sources(d / "src"), d / "out").path.read_bytes()
    return _VALID["pkg"]


def _parse(data: bytes) -> None:
    try:
        verify_package_bytes(data)
    except PackageError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_mutated_packages_give_clean_errors(tmp_path_factory, data):
    pkg = bytearray(_valid_package(tmp_path_factory))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(pkg) - 1))
        pkg[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(pkg)))
    _parse(bytes(pkg[:cut] if data.draw(st.booleans()) else pkg))


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-5, 2**70) | st.text(max_size=8),
    lambda ch: st.lists(ch, max_size=4) | st.dictionaries(
        st.sampled_from(["format", "model", "version", "files", "sbom", "kind", "path", "size",
                         "sha256", "stored", "offset", "csize", "compression", "compatible_models",
                         "security_counter", "min_base_version", "base_version"]), ch, max_size=6),
    max_leaves=20))
def test_fuzz_arbitrary_manifests_give_clean_errors(doc):
    import hashlib

    m = canonical_json(doc) if not isinstance(doc, (int, float)) or isinstance(doc, bool) else b"1"
    _parse(HEADER.pack(b"MSPK", 1, 0, 0, len(m), hashlib.sha256(m).digest()) + m + b"\x00" * 8)


def test_deeply_nested_manifest_is_a_clean_error():
    import hashlib

    m = b"[" * 30000 + b"]" * 30000
    with pytest.raises(PackageError):
        verify_package_bytes(HEADER.pack(b"MSPK", 1, 0, 0, len(m), hashlib.sha256(m).digest()) + m)


def test_absurd_sizes_are_a_clean_error(tmp_path_factory):
    import hashlib

    pkg = _valid_package(tmp_path_factory)
    mlen = int.from_bytes(pkg[8:12], "big")
    m = json.loads(pkg[44:44 + mlen])
    m["files"][0]["size"] = 2**70
    mb = canonical_json(m)
    with pytest.raises(PackageFormatError, match="size out of range"):
        verify_package_bytes(HEADER.pack(b"MSPK", 1, 0, 0, len(mb), hashlib.sha256(mb).digest()) + mb + pkg[44 + mlen:])
