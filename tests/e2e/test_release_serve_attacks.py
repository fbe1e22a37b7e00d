"""Attacks on `medsentry repo serve` (issue 11 item 5), run against the real CLI
in its own process: symbolic links out of the repository (to /etc/passwd, to
the release keys, to /dev/zero), a FIFO, and floods of half-sent requests
(400 at once, a slow drip, more than --max-clients)."""
from __future__ import annotations

import contextlib
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.test_release_serve import start_server as start
from tests.e2e.test_release_serve import stop_server as stop

ROOT = b'{"signed": "a root"}'


@pytest.fixture
def workdir(tmp_path):
    wd = tmp_path / "wd"
    meta = wd / "repository" / "metadata"
    meta.mkdir(parents=True)
    (wd / "repository" / "targets").mkdir()
    (meta / "1.root.json").write_bytes(ROOT)
    (wd / "keys").mkdir()
    (wd / "keys" / "timestamp-ab12.key").write_text("SECRET KEY MATERIAL")
    return wd


@contextlib.contextmanager
def serving(workdir: Path, *extra: str):
    """`medsentry repo serve` in its own process: (process, base URL, port)."""
    proc, url = start(workdir, *extra)
    try:
        yield proc, url, int(url.rsplit(":", 1)[1])
    finally:
        stop(proc)


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


@contextlib.contextmanager
def half_open(port: int, n: int):
    """`n` connections that each send the start of a request head, never its end."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            socks[-1].sendall(b"GET /metadata/1.root.json HTTP/1.1\r\nHost: x\r\n")
        yield socks
    finally:
        for s in socks:
            s.close()


def closed_by_server(s: socket.socket, timeout: float) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_links_out_of_the_repository_and_special_files_are_never_served(workdir):
    repo = workdir / "repository"
    (repo / "metadata" / "passwd.json").symlink_to("/etc/passwd")
    (repo / "keys").symlink_to(workdir / "keys", target_is_directory=True)
    (repo / "targets" / "zero.bin").symlink_to("/dev/zero")
    (repo / "targets" / "root-link.json").symlink_to(repo / "metadata" / "1.root.json")
    os.mkfifo(repo / "targets" / "fifo.bin")
    with serving(workdir) as (proc, url, port):
        assert get(f"{url}/metadata/1.root.json") == (200, ROOT)
        for path in ("/metadata/passwd.json", "/keys/timestamp-ab12.key", "/keys/", "/targets/zero.bin",
                     "/targets/root-link.json", "/targets/fifo.bin", "/metadata/../../keys/timestamp-ab12.key",
                     "/metadata/%2e%2e/%2e%2e/keys/timestamp-ab12.key", "/metadata/", "/"):
            t0 = time.monotonic()
            status, body = get(url + path)
            assert status == 404, (path, status, body[:80])
            assert time.monotonic() - t0 < 2, f"{path} took {time.monotonic() - t0:.1f} s"


def test_400_half_sent_requests_neither_block_clients_nor_grow_threads(workdir):
    with serving(workdir, "--head-timeout", "2") as (proc, url, port):
        assert get(f"{url}/metadata/1.root.json")[0] == 200
        before = threads(proc.pid)
        with half_open(port, 400) as socks:
            t0 = time.monotonic()
            assert get(f"{url}/metadata/1.root.json", timeout=5) == (200, ROOT)
            assert time.monotonic() - t0 < 1.0, "a normal client waited behind the half-open ones"
            assert threads(proc.pid) <= max(before, 4), f"threads {before} -> {threads(proc.pid)}"
            # every half-open connection is closed by the server once its head deadline passed
            deadline = time.monotonic() + 6
            still_open = [s for s in socks if not closed_by_server(s, max(0.01, deadline - time.monotonic()))]
            assert still_open == [], f"{len(still_open)} of 400 idle connections still open"
        assert get(f"{url}/metadata/1.root.json") == (200, ROOT)


def test_a_slow_drip_is_closed_at_the_head_deadline(workdir):
    with serving(workdir, "--head-timeout", "1.5") as (proc, url, port):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        t0 = time.monotonic()
        closed_after = None
        with s:
            for byte in b"GET /metadata/1.root.json HTTP/1.1\r\nHost: x\r\n":
                try:
                    s.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    closed_after = time.monotonic() - t0
                    break
                if closed_by_server(s, 0.25):
                    closed_after = time.monotonic() - t0
                    break
        assert closed_after is not None, "a client sending one byte every 0.25 s was never cut off"
        assert 1.0 < closed_after < 4.0, closed_after


def test_more_half_open_clients_than_max_clients_still_leave_room(workdir):
    with serving(workdir, "--max-clients", "20", "--head-timeout", "30") as (proc, url, port):
        with half_open(port, 60) as socks:
            for _ in range(3):  # each newcomer evicts the oldest half-open connection
                assert get(f"{url}/metadata/1.root.json", timeout=3) == (200, ROOT)
            assert sum(closed_by_server(s, 0.05) for s in socks[:30]) >= 30 - 20
