"""The device TUF client (`medsentry-tuf-client`, MicroPython VM, 256 KiB heap)
against repositories published by the release tooling: every state accepted,
rotations (root and online roles), recall and expiry followed, the per-model
delegation enforced."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HOST_DIR = Path(__file__).resolve().parents[1] / "host"
if str(HOST_DIR) not in sys.path:
    sys.path.insert(0, str(HOST_DIR))

from test_release_support import forge_role_with_target, make_workdir, past, served  # noqa: E402

from host_tools.release.publish import publish_package  # noqa: E402
from host_tools.release.recall import recall_release  # noqa: E402
from host_tools.release.refresh import refresh  # noqa: E402
from host_tools.release.rotate import rotate_key  # noqa: E402

CLIENT = Path(sys.executable).parent / "medsentry-tuf-client"
pytestmark = pytest.mark.skipif(not CLIENT.exists(), reason="medsentry-tuf-client (issue 3) not installed")


class Device:
    """One device: a metadata dir initialised with the first root, kept across runs."""

    def __init__(self, tmp: Path, root: Path) -> None:
        self.meta = tmp / "meta"
        self.targets = tmp / "targets"
        self.targets.mkdir(parents=True, exist_ok=True)
        r = self._run("init", str(root))
        assert r.returncode == 0, r.stdout + r.stderr

    def _run(self, *args: str, url: str | None = None, names=()) -> subprocess.CompletedProcess:
        cmd = [str(CLIENT), "--metadata-dir", str(self.meta)]
        if url:
            cmd += ["--metadata-url", f"{url}/metadata", "--target-base-url", f"{url}/targets",
                    "--target-dir", str(self.targets)]
        for n in names:
            cmd += ["--target-name", n]
        return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120)

    def refresh(self, url: str) -> subprocess.CompletedProcess:
        return self._run("refresh", url=url)

    def download(self, url: str, *names: str) -> subprocess.CompletedProcess:
        return self._run("download", url=url, names=names)

    def file(self, name: str) -> bytes:
        return (self.targets / name.replace("/", "%2F")).read_bytes()

    def trusted(self, role: str) -> int:
        return json.loads((self.meta / f"{role}.json").read_text())["signed"]["version"]


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def fails(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1, r.stdout + r.stderr
    return r.stdout + r.stderr


def test_device_client_follows_publish_recall_and_rotations(tmp_path):
    env = make_workdir(tmp_path, models=("pump-v2", "monitor-v1"))
    dev = Device(tmp_path / "dev", env.root1())
    pkg1 = env.build("1.0.0", 1)
    with env.session() as s:
        publish_package(s, pkg1)
    with served(env) as url:
        ok(dev.download(url, "pump-v2/pump-v2-1.0.0.mspk"))
        assert dev.file("pump-v2/pump-v2-1.0.0.mspk") == pkg1.read_bytes()

        pkg2 = env.build("1.1.0", 2, variant="b")
        with env.session() as s:
            publish_package(s, pkg2, "canary")
        ok(dev.download(url, "pump-v2/pump-v2-1.1.0.mspk"))
        with env.session() as s:
            recall_release(s, "1.1.0", "dose rounding bug")
        out = fails(dev.download(url, "pump-v2/pump-v2-1.1.0.mspk"))
        assert "not listed" in out or "not found" in out.lower()
        ok(dev.download(url, "pump-v2/recalls.json"))
        assert json.loads(dev.file("pump-v2/recalls.json"))["recalled"][0]["version"] == "1.1.0"

        counter, version = 3, 2
        for role in ("root", "timestamp", "snapshot", "targets", "pump-v2"):
            with env.session() as s:
                rotate_key(s, role)
            pkg = env.build(f"1.{version}.0", counter, variant=role)
            with env.session() as s:
                publish_package(s, pkg)
            name = f"pump-v2/pump-v2-1.{version}.0.mspk"
            ok(dev.download(url, name))
            assert dev.file(name) == pkg.read_bytes(), role
            counter, version = counter + 1, version + 1
        assert dev.trusted("root") == 5  # root, timestamp, snapshot, targets rotations


def test_device_client_follows_expiry_and_refresh(tmp_path):
    env = make_workdir(tmp_path, models=("pump-v2",))
    dev = Device(tmp_path / "dev", env.root1())
    pkg = env.build("1.0.0", 1)
    with env.session(now=past(days=3)) as s:  # the timestamp (1 d) is expired
        publish_package(s, pkg)
    with served(env) as url:
        assert "expired" in fails(dev.refresh(url)).lower()
        with env.session() as s:
            refresh(s)
        ok(dev.download(url, "pump-v2/pump-v2-1.0.0.mspk"))


def test_device_client_enforces_model_delegation(tmp_path):
    env = make_workdir(tmp_path, models=("pump-v2", "monitor-v1"))
    with env.session() as s:
        publish_package(s, env.build("1.0.0", 1))
        pump_keyid = s.repo.role_keys("pump-v2")[0][0]
    dev = Device(tmp_path / "dev", env.root1())
    evil = "monitor-v1/monitor-v1-9.9.9.mspk"
    with served(env) as url:
        ok(dev.refresh(url))
        # the pump role lists a monitor target (validly signed by the pump key)
        forge_role_with_target(env, "pump-v2", evil, b"evil firmware", pump_keyid)
        assert "not listed" in fails(dev.download(url, evil))
        # the monitor role re-signed with the pump key
        forge_role_with_target(env, "monitor-v1", evil, b"evil firmware", pump_keyid)
        assert "signature" in fails(dev.download(url, evil)).lower()
        assert not (dev.targets / evil.replace("/", "%2F")).exists()


def test_device_client_accepts_ecdsa_repository(tmp_path):
    from host_tools.release.config import ReleaseConfig

    env = make_workdir(tmp_path, models=("pump-v2",), config=ReleaseConfig(key_type="ecdsa"))
    pkg = env.build("1.0.0", 1)
    with env.session() as s:
        publish_package(s, pkg)
    dev = Device(tmp_path / "dev", env.root1())
    with served(env) as url:
        ok(dev.download(url, "pump-v2/pump-v2-1.0.0.mspk"))
    assert dev.file("pump-v2/pump-v2-1.0.0.mspk") == pkg.read_bytes()


@pytest.mark.skipif(not __import__("shutil").which("faketime"), reason="Debian faketime not installed")
def test_cron_refresh_keeps_devices_updating_over_a_fortnight(tmp_path):
    """`medsentry timestamp refresh` run from "cron" every other day (clock
    moved with libfaketime, for the CLI and for the device VM alike) keeps the
    repository valid for the device; one skipped week and the device refuses it."""
    import os

    env = make_workdir(tmp_path, models=("pump-v2",))
    with env.session() as s:
        publish_package(s, env.build("1.0.0", 1))
    dev = Device(tmp_path / "dev", env.root1())
    # cron holds the online keys it may need (timestamp daily, snapshot weekly)
    cron_env = {**os.environ, **{k: v for k, v in env.pw.env().items() if k.endswith(("TIMESTAMP", "SNAPSHOT"))}}
    medsentry = str(Path(sys.executable).parent / "medsentry")

    def at(day, cmd, **kw):
        return subprocess.run(["faketime", "-f", f"+{day}d", *cmd], capture_output=True, text=True,
                              timeout=120, **kw)

    with served(env) as url:
        device_cmd = [str(CLIENT), "--metadata-dir", str(dev.meta), "--metadata-url", f"{url}/metadata", "refresh"]
        for day in (2, 4, 6, 8, 10, 12, 14):
            r = at(day, [medsentry, "--workdir", str(env.workdir), "timestamp", "refresh", "--no-prompt"], env=cron_env)
            assert r.returncode == 0, r.stdout + r.stderr
            ok(at(day, device_cmd))
        assert "expired" in fails(at(21, device_cmd)).lower()
    with env.session() as s:
        # the snapshot was re-signed by cron before its 7 days ran out
        assert s.repo.md("snapshot").signed.version >= 3
