"""Staged rollout with automatic halt (host side): stages signed into the
release's TUF target, advanced on health from real update reports in a real
fleet.db (sealed records through the Ingestor), halted by itself when the
rollback rate crosses the threshold. Membership is computed with the device's
own function (updater/install/policy.py), tested on both runtimes in
tests/device/test_rollout_policy.py."""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

HOST_DIR = Path(__file__).resolve().parent
if str(HOST_DIR) not in sys.path:
    sys.path.insert(0, str(HOST_DIR))

from fleet_fixtures import Fleet  # noqa: E402
from test_release_support import make_workdir  # noqa: E402

from host_tools.cli.main import cli  # noqa: E402
from host_tools.fleet import rollout_health  # noqa: E402
from host_tools.release.errors import ConfigError, UnknownRelease  # noqa: E402
from host_tools.release.publish import package_target_path, publish_package  # noqa: E402
from host_tools.release.rollout import (  # noqa: E402
    advance_rollout,
    halt_rollout,
    load_plans,
    parse_stages,
    start_rollout,
)
from updater.install import policy  # noqa: E402


def test_host_bucket_is_the_device_function():
    assert rollout_health.rollout_bucket is policy.rollout_bucket
    sha = "5e" * 32
    for i in range(300):
        dev = f"pump-{i}"
        want = int.from_bytes(hashlib.sha256(f"{dev}:{sha}".encode()).digest()[:3], "big") % 100
        assert policy.rollout_bucket(dev, sha) == want


def test_stages_are_validated():
    assert parse_stages("10,50,100") == [10, 50, 100]
    for bad in ("", "10,x", "50,10,100", "10,50", "0,100", "10,10,100", "10,150"):
        with pytest.raises(ConfigError):
            parse_stages(bad)


def _signed_percent(env, model, version):
    with env.session() as s:
        return s.repo.md(model).signed.targets[package_target_path(model, version)].custom.get("rollout_percent")


def _pick(sha, lo, hi, taken):
    """A device id whose bucket for `sha` is in [lo, hi)."""
    for i in range(1000):
        dev = f"pump-{i}"
        if dev not in taken and lo <= policy.rollout_bucket(dev, sha) < hi:
            return dev
    raise AssertionError("no device id found")


@pytest.fixture
def staged(tmp_path):
    env = make_workdir(tmp_path, models=("pump-v2",))
    with env.session() as s:
        rel = publish_package(s, env.build("1.1.0", 2), held=True)
    assert _signed_percent(env, "pump-v2", "1.1.0") == 0  # published held: offered to nobody
    with env.session() as s:
        sha = s.repo.md("pump-v2").signed.targets[rel.target].custom["manifest_sha256"]
    fleet = Fleet(env.workdir)
    devs = {}
    devs["a"] = _pick(sha, 0, 10, devs.values())  # in the 10 % stage
    devs["b"] = _pick(sha, 10, 50, devs.values())  # joins at 50 %
    devs["c"] = _pick(sha, 50, 100, devs.values())  # joins at 100 %
    for d in devs.values():
        fleet.issue(d, "pump-v2")
    fleet.issue("monitor-9", "monitor-v1")  # another model: never counted
    yield env, fleet, devs
    fleet.close()


def test_rollout_advances_on_health_then_halts_on_rollbacks(staged):
    env, fleet, devs = staged
    t = time.time()
    with env.session() as s:
        plan = start_rollout(s, "pump-v2", "1.1.0", [10, 50, 100], halt_on_rollback=0.2)
    assert plan["percent"] == 10 and _signed_percent(env, "pump-v2", "1.1.0") == 10
    with env.session() as s:
        with pytest.raises(ConfigError, match="already running"):
            start_rollout(s, "pump-v2", "1.1.0", [10, 100])
        result, why, plan = advance_rollout(s, "pump-v2", "1.1.0")
    assert result == "waiting" and "0 device(s) confirmed 1.1.0, 1 needed (1 in the 10 % stage)" in why
    # device a (in the stage) installs and confirms: the next stage opens
    fleet.update(devs["a"], t + 1, "1.0.0", step="installed", version="1.1.0", slot="b")
    fleet.update(devs["a"], t + 2, "1.1.0", step="confirmed", version="1.1.0")
    with env.session() as s:
        result, why, plan = advance_rollout(s, "pump-v2", "1.1.0")
    assert result == "advanced" and plan["percent"] == 50, why
    assert _signed_percent(env, "pump-v2", "1.1.0") == 50
    h = rollout_health.stage_health(env.workdir, "pump-v2", "1.1.0", plan["manifest_sha256"], 50)
    assert h.in_stage == sorted([devs["a"], devs["b"]]) and h.confirmed == [devs["a"]]
    # device b rolls back: 1 of 2 finished devices (50 %) is above 20 %: halted by itself
    fleet.update(devs["b"], t + 3, "1.1.0", step="rolling_back", version="1.1.0", reason="health check failed")
    with env.session() as s:
        result, why, plan = advance_rollout(s, "pump-v2", "1.1.0")
    assert result == "halted" and "50%" in why and devs["b"] in why, why
    assert plan["state"] == "halted" and plan["percent"] == 0
    assert _signed_percent(env, "pump-v2", "1.1.0") == 0
    assert load_plans(env.workdir)["pump-v2/1.1.0"]["history"][-1]["why"].startswith("automatic halt")
    with env.session() as s:
        assert advance_rollout(s, "pump-v2", "1.1.0")[0] == "halted"  # stays halted


def test_rollout_completes_and_cli(staged):
    env, fleet, devs = staged
    t = time.time()
    run = CliRunner()

    def medsentry(*args):
        r = run.invoke(cli, ["--workdir", str(env.workdir), *args], env=env.pw.env())
        assert "Traceback" not in r.output
        return r

    r = medsentry("release", "rollout", "pump-v2", "1.1.0", "--stages", "10,100", "--no-prompt")
    assert r.exit_code == 0 and "stage 10 %" in r.output, r.output
    bad = medsentry("release", "rollout", "pump-v2", "9.9.9", "--stages", "10,100", "--no-prompt")
    assert bad.exit_code != 0 and "not published" in bad.output
    bad = medsentry("release", "rollout", "pump-v2", "1.1.0", "--stages", "10,50", "--no-prompt")
    assert bad.exit_code != 0 and "ending with 100" in bad.output
    for dev in devs.values():
        fleet.update(dev, t + 1, "1.1.0", step="confirmed", version="1.1.0")
    r = medsentry("rollout", "advance", "pump-v2", "1.1.0", "--no-prompt")
    assert r.exit_code == 0 and "advanced" in r.output and "now 100 %" in r.output, r.output
    r = medsentry("rollout", "advance", "pump-v2", "1.1.0", "--no-prompt")
    assert r.exit_code == 0 and "complete" in r.output, r.output
    r = medsentry("rollout", "status", "--json")
    doc = json.loads(r.output)
    assert doc[0]["plan"]["state"] == "complete" and doc[0]["health"]["confirmed"] == sorted(devs.values())
    assert doc[0]["health"]["rollback_rate"] == 0.0
    r = medsentry("rollout", "status")
    assert "complete" in r.output and "confirmed 3" in r.output, r.output
    r = medsentry("fleet", "status", "--json")
    rel = [x for x in json.loads(r.output)["releases"] if x["version"] == "1.1.0"]
    assert rel[0]["rollout"] == "100 % complete" and rel[0]["confirmed"] == 3, rel
    # a halt by recall: the release leaves the role, the rollout is halted
    r = medsentry("rollout", "halt", "pump-v2", "1.1.0", "--reason", "field reports", "--recall", "--no-prompt")
    assert r.exit_code == 0, r.output
    assert load_plans(env.workdir)["pump-v2/1.1.0"]["state"] == "halted"
    with env.session() as s:
        assert package_target_path("pump-v2", "1.1.0") not in s.repo.md("pump-v2").signed.targets
        with pytest.raises(UnknownRelease):
            halt_rollout(s, "pump-v2", "2.0.0", "x")
