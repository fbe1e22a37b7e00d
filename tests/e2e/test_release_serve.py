"""Multi-process release tests: `medsentry repo serve` (HTTP and HTTPS) in its own
process followed by ngclient, and concurrent cron-style `timestamp refresh`
runs racing a `release publish` (the repository lock keeps every state valid)."""
from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HOST_DIR = Path(__file__).resolve().parents[1] / "host"
if str(HOST_DIR) not in sys.path:
    sys.path.insert(0, str(HOST_DIR))

from test_release_support import NgClient, make_workdir  # noqa: E402
from tuf.ngclient import Updater  # noqa: E402
from tuf.ngclient._internal.proxy import ProxyEnvironment  # noqa: E402
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher  # noqa: E402

from host_tools.release.publish import publish_package  # noqa: E402

MEDSENTRY = str(Path(sys.executable).parent / "medsentry")


@pytest.fixture
def env(tmp_path):
    env = make_workdir(tmp_path, models=("pump-v2",))
    with env.session() as s:
        publish_package(s, env.build("1.0.0", 1))
    return env


def start_server(workdir, *extra):
    proc = subprocess.Popen(
        [MEDSENTRY, "--workdir", str(workdir), "repo", "serve", "--port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = None
    for _ in range(5):
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("serving"):
            url = line.split(" at ")[1].split("/ ")[0].strip()
            break
    if url is None:
        proc.kill()
        raise AssertionError("server did not start: " + proc.stderr.read())
    return proc, url


def stop_server(proc):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_repo_serve_http_followed_by_ngclient(env, tmp_path):
    proc, url = start_server(env.workdir)
    try:
        assert url.startswith("http://127.0.0.1:")
        data = NgClient(tmp_path / "c", env.root1()).fetch(url, "pump-v2/pump-v2-1.0.0.mspk")
        assert data == (env.workdir / "packages" / "pump-v2-1.0.0.mspk").read_bytes()
    finally:
        stop_server(proc)
    assert proc.returncode == 0


def test_repo_serve_tls_followed_by_ngclient(env, tmp_path):
    proc, url = start_server(env.workdir, "--tls")
    try:
        assert url.startswith("https://127.0.0.1:")
        ca = env.workdir / "tls" / "server.crt"
        ctx = ssl.create_default_context(cafile=str(ca))
        req = urllib.request.Request(f"{url}/metadata/1.root.json", headers={"Range": "bytes=0-9"})
        with urllib.request.urlopen(req, context=ctx) as resp:
            assert resp.status == 206 and resp.read() == env.root1().read_bytes()[:10]
        with pytest.raises(urllib.error.URLError):  # an unpinned client refuses the self-signed cert
            urllib.request.urlopen(f"{url}/metadata/timestamp.json", context=ssl.create_default_context())
        client = NgClient(tmp_path / "c", env.root1())
        fetcher = Urllib3Fetcher()
        fetcher._proxy_env = ProxyEnvironment(ca_certs=str(ca))
        u = Updater(str(client.dir / "meta"), f"{url}/metadata/", str(client.dir / "dl"), f"{url}/targets/",
                    fetcher=fetcher, bootstrap=None)
        u.refresh()
        info = u.get_targetinfo("pump-v2/pump-v2-1.0.0.mspk")
        assert info is not None and Path(u.download_target(info)).stat().st_size == info.length
    finally:
        stop_server(proc)


def test_concurrent_refreshes_and_publish_are_serialised(env, tmp_path):
    cmd_env = {**os.environ, **env.pw.env()}
    with env.session() as s:
        v0 = s.repo.md("timestamp").signed.version
    pkg = env.build("1.1.0", 2, variant="b")
    procs = [
        subprocess.Popen([MEDSENTRY, "--workdir", str(env.workdir), "timestamp", "refresh", "--no-prompt"],
                         env=cmd_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    procs.append(subprocess.Popen(
        [MEDSENTRY, "--workdir", str(env.workdir), "release", "publish", str(pkg), "--no-prompt"],
        env=cmd_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, out + err
    with env.session() as s:  # loads and verifies the whole chain
        assert s.repo.md("timestamp").signed.version == v0 + 5
    proc, url = start_server(env.workdir)
    try:
        assert NgClient(tmp_path / "c", env.root1()).fetch(url, "pump-v2/pump-v2-1.1.0.mspk") == pkg.read_bytes()
    finally:
        stop_server(proc)
