"""The broker's per-client publish limit (host_tools/broker/ratelimit/, a Mosquitto 2.0
plugin) on a real Mosquitto: a client over its rate is cut to burst + rate x time,
another client is untouched, what was dropped is reported on medsentry/broker/shed,
the ACL file still decides what is allowed, a bad option stops the broker with the
reason, and a machine without the compiler or headers gets a clear error."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from host_tools.broker import BrokerSettings, plugin, write_config
from host_tools.broker.runner import MOSQUITTO
from tests.e2e.broker_fixtures import running_fleet


def _sub(fleet, topics):
    got: dict[str, list[bytes]] = {}
    c = fleet.client("collector")
    c.on_message = lambda cl, u, m: got.setdefault(m.topic, []).append(bytes(m.payload))
    c.subscribe([(t, 1) for t in topics])
    time.sleep(0.3)
    return c, got


def test_one_client_over_its_rate_is_cut_and_reported_the_other_is_not(tmp_path):
    with running_fleet(tmp_path) as fleet:
        sub, got = _sub(fleet, ["medsentry/+/telemetry", plugin.NOTIFY_TOPIC, "medsentry/pump-2/cmd"])
        flooder, honest = fleet.client("pump-1"), fleet.client("pump-2")
        # The ACL file still decides: pump-1 may not write another device's topics.
        fleet.publish(flooder, "medsentry/pump-2/cmd", b"not mine")
        t0 = time.monotonic()
        n = 6000
        for i in range(n):
            flooder.publish("medsentry/pump-1/telemetry", b"%d" % i, qos=0)
            if i % 300 == 0:
                fleet.publish(honest, "medsentry/pump-2/telemetry", b"h%d" % i)
        elapsed = time.monotonic() - t0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            reports = [json.loads(p) for p in got.get(plugin.NOTIFY_TOPIC, [])]
            delivered = len(got.get("medsentry/pump-1/telemetry", []))
            if reports and reports[-1]["shed"] + delivered >= n:
                break
            time.sleep(0.2)
        assert len(got.get("medsentry/pump-2/telemetry", [])) == 20
        assert delivered <= plugin.BURST + plugin.RATE * (elapsed + 1.5), (delivered, elapsed)
        assert reports and reports[-1]["client"] == "pump-1", reports
        assert reports[-1]["shed"] + delivered == n and reports[-1]["rate"] == plugin.RATE, (reports, delivered)
        assert "medsentry/pump-2/cmd" not in got
        assert "medsentry_ratelimit: client pump-1 over 500 msg/s" in fleet.broker.log_text()
        sub.disconnect()


def test_a_bad_option_stops_the_broker_with_the_reason(tmp_path):
    from host_tools.pki import FleetPKI

    pki = FleetPKI(tmp_path / "work")
    pki.init()
    conf, _ = write_config(pki, BrokerSettings(port=18999, persistence=False, run_as_root=True, rate_limit=0,
                                               log_file=tmp_path / "m.log"), tmp_path / "b")
    proc = subprocess.run([MOSQUITTO, "-c", str(conf)], capture_output=True, text=True, timeout=20)
    assert proc.returncode != 0
    log = (tmp_path / "m.log").read_text() + proc.stderr
    assert "medsentry_ratelimit: rate must be a number >= 1" in log, log


def test_without_a_compiler_the_broker_config_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSENTRY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(plugin.PluginBuildError, match="mosquitto-dev libmosquitto-dev gcc libc6-dev"):
        plugin.plugin_path()
    monkeypatch.delenv("CC")
    built = plugin.plugin_path()
    assert built.parent == Path(tmp_path / "cache" / "medsentry" / "broker") and built.stat().st_size > 0
