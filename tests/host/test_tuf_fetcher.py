"""The device HTTP(S) fetcher (updater/tuf/fetcher.py) against a loopback
server that misbehaves on purpose, on both runtimes: the same script runs on
the MicroPython VM and on CPython and must report the same outcomes."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tuf_repo import run_cases, serve

SCRIPT = r'''
import sys, hashlib, binascii
from updater.tuf.fetcher import Fetcher, BytesSink
base = sys.argv[1]
ca = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None
f = Fetcher(read_timeout=2, grace_ms=800, min_bytes_per_s=1024, connect_timeout=2, cafile=ca)
def digest(path, cap=100000, offset=0):
    s = BytesSink()
    n = f.fetch(base + path, s, cap, offset)
    return "%d:%s" % (n, binascii.hexlify(hashlib.sha256(bytes(s.buf)).digest()).decode()[:16])
CASES = [
    ("full", lambda: digest("/file.bin")),
    ("range", lambda: digest("/file.bin", offset=1000)),
    ("range_ignored", lambda: digest("/ignore/file.bin", offset=1000)),
    ("chunked", lambda: digest("/chunked/file.bin")),
    ("cap_content_length", lambda: digest("/file.bin", cap=4999)),
    ("cap_exact", lambda: digest("/file.bin", cap=5000)),
    ("cap_endless", lambda: digest("/endless", cap=50000)),
    ("not_found", lambda: digest("/nope")),
    ("redirect", lambda: digest("/redir")),
    ("redirect_loop", lambda: digest("/loop")),
    ("slow", lambda: digest("/slow/file.bin")),
    ("stall", lambda: digest("/stall")),
    ("refused", lambda: Fetcher(connect_timeout=2).fetch_bytes("http://127.0.0.1:%s/x" % sys.argv[3], 10)),
    ("bad_scheme", lambda: f.fetch_bytes("ftp://127.0.0.1/x", 10)),
]
for name, fn in CASES:
    try:
        print("CASE", name, "ok", fn())
    except Exception as e:
        print("CASE", name, "err", type(e).__name__, getattr(e, "status", None))
'''

EXPECTED = {
    "cap_content_length": "err DownloadLengthMismatchError None",
    "cap_endless": "err DownloadLengthMismatchError None",
    "not_found": "err DownloadHTTPError 404",
    "redirect_loop": "err TooManyRedirectsError None",
    "slow": "err SlowRetrievalError None",
    "stall": "err SlowRetrievalError None",
    "refused": "err DownloadError None",
    "bad_scheme": "err DownloadError None",
}


def _run(runtime: str, args: list[str], tmp: Path) -> dict[str, str]:
    out = run_cases(runtime, SCRIPT, args, tmp, timeout=120)
    output = out.pop("_output")
    assert len(out) == 14, output
    return out


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_fetcher_cases(tmp_path, runtime, https):
    root = tmp_path / "www"
    root.mkdir()
    data = bytes(range(250)) * 20  # 5000 bytes
    (root / "file.bin").write_bytes(data)
    from tuf_repo import free_port

    with serve(root, https=https, workdir=tmp_path / "pki") as srv:
        srv.misbehave("/ignore/file.bin", "ignore_range")
        (root / "ignore").mkdir()
        (root / "ignore" / "file.bin").write_bytes(data)
        (root / "chunked").mkdir()
        (root / "chunked" / "file.bin").write_bytes(data)
        srv.misbehave("/chunked/file.bin", "chunked")
        srv.misbehave("/endless", "endless")
        srv.misbehave("/redir", "redirect", location="file.bin")
        srv.misbehave("/loop", "redirect", location="/loop")
        (root / "slow").mkdir()
        (root / "slow" / "file.bin").write_bytes(data)
        srv.misbehave("/slow/file.bin", "slow", rate=200)
        srv.misbehave("/stall", "stall")
        out = _run(runtime, [srv.url, srv.ca_file or "-", str(free_port())], tmp_path)
    full = "ok 5000:" + hashlib.sha256(data).hexdigest()[:16]
    tail = "ok 4000:" + hashlib.sha256(data[1000:]).hexdigest()[:16]
    assert out["full"] == full
    assert out["cap_exact"] == full
    assert out["chunked"] == full
    assert out["redirect"] == full
    assert out["range"] == tail
    assert out["range_ignored"] == tail
    for k, v in EXPECTED.items():
        assert out[k] == v, (k, out[k])


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_https_certificate_for_another_host_is_refused(tmp_path, runtime):
    root = tmp_path / "www"
    root.mkdir()
    (root / "file.bin").write_bytes(b"x" * 5000)
    from tuf_repo import free_port

    with serve(root, https=True, workdir=tmp_path / "pki", cert_hosts=("other.example",)) as srv:
        out = _run(runtime, [srv.url, srv.ca_file, str(free_port())], tmp_path)
    assert out["full"] == "err DownloadError None", out["full"]
