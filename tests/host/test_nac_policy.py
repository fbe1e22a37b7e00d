"""The admission policy table: which finding sends a device where; absent tables are
no finding; bad network.json is refused clearly; the ruleset names every segment."""
from __future__ import annotations

import json
import sqlite3
import time

import pytest
from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.nac.policy import ADMIT, QUARANTINE, REFUSE, PolicyError, fleet_decisions
from host_tools.network.config import NetworkConfigError, default_config, parse_config
from host_tools.network.nftables import render_nftables
from host_tools.pki import FleetPKI


@pytest.fixture
def pki(tmp_path):
    p = FleetPKI(tmp_path / "w")
    p.init()
    for dev, model in (("pump-1", "pump-v2"), ("pump-2", "pump-v2"), ("mon-1", "monitor-v1")):
        p.issue(dev, model)
    return p


def _by_id(pki, models=("pump-v2", "monitor-v1")):
    return {d.device_id: d for d in fleet_decisions(pki, default_config(list(models)))}


def test_no_fleet_db_means_no_finding(pki):
    ds = _by_id(pki)
    assert {d.action for d in ds.values()} == {ADMIT}
    assert ds["pump-1"].segment.name == "pump-v2" and ds["mon-1"].segment.name == "monitor-v1"


def test_integrity_violation_and_critical_event_quarantine(pki):
    with sqlite3.connect(pki.workdir / "fleet.db") as c:
        c.execute("CREATE TABLE posture (id INTEGER PRIMARY KEY, device_id TEXT, integrity_ok INTEGER)")
        c.executemany("INSERT INTO posture (device_id, integrity_ok) VALUES (?, ?)",
                      [("pump-1", 1), ("pump-1", 0), ("mon-1", 0), ("mon-1", 1)])
        c.execute("CREATE TABLE sec_events (device_id TEXT, kind TEXT, severity TEXT)")
        c.execute("INSERT INTO sec_events VALUES ('pump-2', 'chain_broken', 'critical')")
    ds = _by_id(pki)
    assert ds["pump-1"].action == QUARANTINE and "integrity" in ds["pump-1"].reasons[0]
    assert ds["mon-1"].action == ADMIT          # latest posture is clean again
    assert ds["pump-2"].action == QUARANTINE and "chain_broken" in ds["pump-2"].reasons[0]


def test_recall_counts_only_for_the_same_model_and_silence_is_reported_only(pki):
    with sqlite3.connect(pki.workdir / "fleet.db") as c:
        c.execute("CREATE TABLE devices (device_id TEXT PRIMARY KEY, fw TEXT, last_seen REAL)")
        c.executemany("INSERT INTO devices VALUES (?, ?, ?)",
                      [("pump-1", "1.2.0", time.time()), ("mon-1", "1.2.0", time.time()),
                       ("pump-2", "1.3.0", time.time() - 10 * 86400)])
    (pki.workdir / "release").mkdir()
    (pki.workdir / "release" / "recalls.json").write_text(json.dumps(
        {"recalls": [{"model": "pump-v2", "version": "1.2.0"}]}))
    ds = _by_id(pki)
    assert ds["pump-1"].action == QUARANTINE
    assert ds["mon-1"].action == ADMIT
    assert ds["pump-2"].action == ADMIT and ds["pump-2"].reasons[0].startswith("silent")


def test_unreadable_recall_record_fails_closed(pki):
    with sqlite3.connect(pki.workdir / "fleet.db") as c:
        c.execute("CREATE TABLE devices (device_id TEXT PRIMARY KEY, fw TEXT, last_seen REAL)")
    (pki.workdir / "release").mkdir()
    (pki.workdir / "release" / "recalls.json").write_text("{not json")
    with pytest.raises(PolicyError):
        _by_id(pki)


def test_revoked_and_segmentless_model_are_refused(pki):
    pki.revoke("pump-2")
    ds = _by_id(pki, models=("pump-v2",))
    assert ds["pump-2"].action == REFUSE and ds["mon-1"].action == REFUSE


@pytest.mark.parametrize("patch, msg", [
    ({"quarantine": {"name": "q", "vlan": 110, "subnet": "10.9.0.0/24"}}, "duplicate vlan"),
    ({"broker": {"address": "not-an-ip", "port": 8883}}, "not an IP"),
    ({"updates": {"address": "192.0.2.20", "port": 70000}}, "not a port"),
    ({"quarantine": {"name": "q", "vlan": 998, "subnet": "198.51.100.0/25"}}, "overlap"),
])
def test_bad_network_config_is_refused(patch, msg):
    doc = dict(default_config(["pump-v2"]).to_json(), **patch)
    with pytest.raises(NetworkConfigError, match=msg):
        parse_config(doc)


def test_ruleset_has_a_commented_rule_per_segment():
    cfg = parse_config(dict(default_config(["pump-v2", "monitor-v1"]).to_json(),
                            time={"address": "192.0.2.123", "port": 123}))
    text = render_nftables(cfg)
    assert "policy drop" in text
    for seg in cfg.segments:
        assert f"ip saddr {seg.subnet} ip daddr 192.0.2.10 tcp dport 8883" in text
        assert f"ip saddr {seg.subnet} ip daddr 192.0.2.123 udp dport 123" in text
    q = cfg.quarantine.subnet
    assert f"ip saddr {q} ip daddr 192.0.2.20 tcp dport 8443" in text
    assert f"ip saddr {q} ip daddr 192.0.2.10" not in text


def test_cli_nac_and_network_never_traceback(tmp_path):
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path / "none"), "nac", "decisions"])
    assert r.exit_code == 1 and "pki init" in r.output and "Traceback" not in r.output
    FleetPKI(tmp_path / "bad").init()
    (tmp_path / "bad" / "network.json").write_text("[1]")
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path / "bad"), "network", "policy"])
    assert r.exit_code == 1 and "JSON object" in r.output


def test_nac_config_never_replaces_a_directory_it_did_not_write(pki, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    args = ["--workdir", str(pki.workdir), "nac", "config"]
    r = CliRunner().invoke(cli, args + ["--out", str(precious)])
    assert r.exit_code == 1 and "not written by `nac config`" in r.output
    assert (precious / "keep.txt").read_text() == "mine"
    out = tmp_path / "raddb"
    for _ in range(2):            # its own output is regenerated in place
        r = CliRunner().invoke(cli, args + ["--out", str(out)])
        assert r.exit_code == 0, r.output
    assert (out / "sites-enabled" / "medsentry").is_file()
