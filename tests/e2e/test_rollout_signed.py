"""A rollout stage is trusted only because it is signed: the device TUF client
(MicroPython VM, 256 KiB heap) accepts each stage the release tooling re-signs,
and refuses a stage raised on the server without the model's key (an attacker
holding the online snapshot and timestamp keys rewrites rollout_percent 50 ->
100 and re-signs snapshot and timestamp around it)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HOST_DIR = Path(__file__).resolve().parents[1] / "host"
if str(HOST_DIR) not in sys.path:
    sys.path.insert(0, str(HOST_DIR))

from test_release_support import make_workdir, served, write_snapshot_and_timestamp  # noqa: E402

from host_tools.release.publish import package_target_path, publish_package  # noqa: E402
from host_tools.release.rollout import advance_rollout, start_rollout  # noqa: E402
from tests.e2e.test_release_device_client import CLIENT, Device, fails, ok  # noqa: E402

pytestmark = pytest.mark.skipif(not CLIENT.exists(), reason="medsentry-tuf-client not installed")
TARGET = package_target_path("pump-v2", "1.1.0")


def accepted_percent(dev: Device) -> int | None:
    """rollout_percent of the release in the device's trusted pump-v2 role."""
    role = json.loads((dev.meta / "pump-v2.json").read_text())["signed"]
    return role["targets"][TARGET]["custom"].get("rollout_percent")


def test_device_trusts_only_signed_stages(tmp_path):
    env = make_workdir(tmp_path, models=("pump-v2",))
    dev = Device(tmp_path / "dev", env.root1())
    with env.session() as s:
        publish_package(s, env.build("1.1.0", 2), held=True)
    with served(env) as url:
        ok(dev.download(url, TARGET))
        assert accepted_percent(dev) == 0
        with env.session() as s:
            start_rollout(s, "pump-v2", "1.1.0", [10, 50, 100])
        ok(dev.download(url, TARGET))
        assert accepted_percent(dev) == 10
        with env.session() as s:
            assert advance_rollout(s, "pump-v2", "1.1.0", force=True)[0] == "advanced"
        ok(dev.download(url, TARGET))
        assert accepted_percent(dev) == 50
        # The attack: stage 100 without the model key (its old signature kept).
        with env.session() as s:
            md = s.repo.md("pump-v2")
        md.signed.targets[TARGET].unrecognized_fields["custom"]["rollout_percent"] = 100
        md.signed.version += 1
        write_snapshot_and_timestamp(env, "pump-v2", md)
        out = fails(dev.download(url, TARGET))
        assert "pump-v2" in out and ("signature" in out.lower() or "threshold" in out.lower()), out
        assert accepted_percent(dev) == 50
