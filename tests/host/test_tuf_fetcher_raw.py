"""The device fetcher (updater/tuf/fetcher.py) against a raw loopback HTTP
server that records the exact request bytes and answers with canned
responses, on both runtimes: redirects whose Location would break the
request line, network-path redirects, partial (206) answers that do not
cover the asked range, and URLs that must never be sent. Plus a relay that
drips a genuine TLS server's handshake: the handshake has a deadline."""
from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from tuf_repo import run_cases, run_device_script

SCRIPT = r'''
import sys
from updater.tuf.fetcher import Fetcher, BytesSink
base, base2 = sys.argv[1], sys.argv[2]
f = Fetcher(read_timeout=2, grace_ms=800, min_bytes_per_s=1024, connect_timeout=2)
def get(url, cap=1000, offset=0):
    s = BytesSink()
    n = f.fetch(url, s, cap, offset)
    return "%d:%s" % (n, bytes(s.buf).decode())
CASES = [
    ("location_space", lambda: get(base + "/loc-space")),
    ("location_ctl", lambda: get(base + "/loc-ctl")),
    ("netpath_redirect", lambda: get(base + "/netpath")),
    ("range_ok", lambda: get(base + "/r-ok", offset=10)),
    ("range_star", lambda: get(base + "/r-star", offset=10)),
    ("range_short", lambda: get(base + "/r-short", offset=10)),
    ("range_len_mismatch", lambda: get(base + "/r-len", offset=10)),
    ("range_wrong_start", lambda: get(base + "/r-start", offset=10)),
    ("url_crlf", lambda: get(base + "/a\r\nX-Evil: 1")),
    ("url_space", lambda: get(base + "/a b")),
]
for name, fn in CASES:
    try:
        print("CASE", name, "ok", fn())
    except Exception as e:
        print("CASE", name, "err", type(e).__name__, getattr(e, "status", None))
'''

BODY90 = b"0123456789" * 9


def _resp(status: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    h = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"HTTP/1.1 {status}\r\n{h}\r\n".encode() + body


class RawServer:
    """Loopback TCP server: records each request head, answers from `routes`
    (request path -> raw response bytes; 404 otherwise)."""

    def __init__(self, routes: dict[str, bytes]) -> None:
        self.routes = routes
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(3)
                head = b""
                try:
                    while b"\r\n\r\n" not in head and len(head) < 65536:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                except OSError:
                    continue
                self.requests.append(head)
                parts = head.split(b" ")
                path = parts[1].decode("latin-1") if len(parts) > 1 else ""
                conn.sendall(self.routes.get(path, _resp("404 Not Found", {"Content-Length": "0"})))

    def __enter__(self) -> "RawServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def _run(runtime: str, args: list[str], tmp: Path) -> dict[str, str]:
    out = run_cases(runtime, SCRIPT, args, tmp, timeout=60)
    output = out.pop("_output")
    assert len(out) == 10, output
    return out


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_fetcher_raw_cases(tmp_path, runtime):
    other = RawServer({"/other": _resp("200 OK", {"Content-Length": "5"}, b"hello")})
    cr = lambda spec, n: {"Content-Range": spec, "Content-Length": str(n)}  # noqa: E731
    routes = {
        "/loc-space": _resp("302 Found", {"Location": "/a b", "Content-Length": "0"}),
        "/loc-ctl": _resp("302 Found", {"Location": "/a\x0bb", "Content-Length": "0"}),
        "/netpath": _resp("302 Found", {"Location": f"//127.0.0.1:{other.port}/other", "Content-Length": "0"}),
        "/r-ok": _resp("206 Partial Content", cr("bytes 10-99/100", 90), BODY90),
        "/r-star": _resp("206 Partial Content", cr("bytes 10-99/*", 90), BODY90),
        # the server sends less than the rest of the file that was asked for
        "/r-short": _resp("206 Partial Content", cr("bytes 10-19/100", 10), BODY90[:10]),
        "/r-len": _resp("206 Partial Content", cr("bytes 10-99/100", 10), BODY90[:10]),
        "/r-start": _resp("206 Partial Content", cr("bytes 0-99/100", 100), b"x" * 100),
    }
    with RawServer(routes) as srv, other:
        out = _run(runtime, [srv.url, other.url], tmp_path)
        sent = list(srv.requests)
        sent_other = list(other.requests)
    assert out["location_space"] == "err DownloadError None", out
    assert out["location_ctl"] == "err DownloadError None", out
    assert out["netpath_redirect"] == "ok 5:hello", out
    assert out["range_ok"] == "ok 90:" + BODY90.decode(), out
    assert out["range_star"] == "ok 90:" + BODY90.decode(), out
    assert out["range_short"] == "err DownloadError 206", out
    assert out["range_len_mismatch"] == "err DownloadError 206", out
    assert out["range_wrong_start"] == "err DownloadError 206", out
    assert out["url_crlf"] == "err DownloadError None", out
    assert out["url_space"] == "err DownloadError None", out
    # Every request that reached the wire has a well-formed request line
    # and only our own headers: nothing injected, nothing split.
    lines = [r.split(b"\r\n")[0] for r in sent]
    for r in sent + sent_other:
        line = r.split(b"\r\n")[0]
        assert line.startswith(b"GET /") and line.endswith(b" HTTP/1.1") and line.count(b" ") == 2, r
        assert b"X-Evil" not in r, r
    paths = sorted(l.split(b" ")[1] for l in lines)
    assert paths == sorted([b"/loc-space", b"/loc-ctl", b"/netpath", b"/r-ok", b"/r-star", b"/r-short",
                            b"/r-len", b"/r-start"]), lines
    assert [r.split(b"\r\n")[0] for r in sent_other] == [b"GET /other HTTP/1.1"]


class DripRelay:
    """TCP relay in front of `target_port`: client bytes go through at once,
    server bytes one at a time every `delay` seconds (a man in the middle
    slowing down a genuine TLS server: each read completes well within the
    read timeout, yet the handshake would take minutes)."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def _pipe(self, src: socket.socket, dst: socket.socket, drip: bool) -> None:
        try:
            src.settimeout(0.2)
            while not self.stop.is_set():
                try:
                    data = src.recv(4096)
                except socket.timeout:
                    continue
                if not data:
                    break
                if drip:
                    for i in range(len(data)):
                        if self.stop.wait(self.delay):
                            return
                        dst.sendall(data[i : i + 1])
                else:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=3)
            for a, b, drip in ((client, upstream, False), (upstream, client, True)):
                t = threading.Thread(target=self._pipe, args=(a, b, drip), daemon=True)
                t.start()
                self.threads.append(t)

    def __enter__(self) -> "DripRelay":
        t = threading.Thread(target=self._serve, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=5)
        self.sock.close()


DRIP_SCRIPT = r'''
import sys
from board.compat import ticks_ms, ticks_diff
from updater.tuf.fetcher import Fetcher
url, ca = sys.argv[1], sys.argv[2]
f = Fetcher(connect_timeout=2, read_timeout=2, grace_ms=1000, min_bytes_per_s=1024, cafile=ca)
t0 = ticks_ms()
try:
    f.fetch_bytes(url, 100000)
    r = "ok"
except Exception as e:
    r = type(e).__name__
print("DRIP", r, ticks_diff(ticks_ms(), t0))
'''


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_tls_handshake_dripped_by_a_relay_times_out(tmp_path, runtime):
    # The slow-retrieval defence must cover the TLS handshake too: a relay
    # forwarding the genuine server's handshake one byte every 50 ms never
    # trips a per-read timeout, and without a deadline the connect would
    # last minutes.
    from tuf_repo import serve

    root = tmp_path / "www"
    root.mkdir()
    (root / "file.bin").write_bytes(b"x" * 5000)
    with serve(root, https=True, workdir=tmp_path / "pki") as srv, DripRelay(srv.port, 0.05) as relay:
        args = [f"https://127.0.0.1:{relay.port}/file.bin", srv.ca_file]
        proc = run_device_script(runtime, DRIP_SCRIPT, args, tmp_path, timeout=60)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("DRIP")]
    assert lines, proc.stdout + proc.stderr
    _d, result, ms = lines[0].split()
    assert result == "SlowRetrievalError", proc.stdout + proc.stderr
    assert int(ms) < 6000, proc.stdout
