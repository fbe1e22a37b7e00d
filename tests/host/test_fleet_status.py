"""Issue 14 item 1: `medsentry fleet status` from a real collector database.

Records are sealed with the devices' real telemetry keys and go through the
real Ingestor into fleet.db; the status reads only that and the PKI.
"""
from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.fleet import fleet_status
from host_tools.fleet.status import NOT_REPORTED, SILENT_AFTER_S

from fleet_fixtures import Fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("fleet"))
    for dev in ("pump-1", "pump-2", "pump-3"):
        f.issue(dev, "pump-v2")
    f.issue("mon-1", "monitor-v1")
    t = f.t0
    # pump-1: 1.0.0 -> 1.1.0 installed in slot b, confirmed
    assert f.status("pump-1", t, fw="1.0.0") == "accepted"
    assert f.vitals("pump-1", t + 1) == "accepted"
    f.update("pump-1", t + 2, "1.0.0", step="available", version="1.1.0")
    f.update("pump-1", t + 3, "1.0.0", step="downloading", version="1.1.0", done=1, files=4)
    f.update("pump-1", t + 4, "1.0.0", step="installed", version="1.1.0", slot="b")
    f.update("pump-1", t + 5, "1.1.0", step="confirmed", version="1.1.0")
    # pump-2: 1.1.0 installed in b, failed its trial, back on a (1.0.0)
    f.status("pump-2", t, fw="1.0.0")
    f.update("pump-2", t + 2, "1.0.0", step="installed", version="1.1.0", slot="b")
    f.update("pump-2", t + 3, "1.1.0", step="trial", version="1.1.0", healthy=False, reason="broker unreachable")
    f.update("pump-2", t + 4, "1.1.0", step="rolling_back", version="1.1.0", reason="broker unreachable")
    f.status("pump-2", t + 6, fw="1.0.0")
    f.update("pump-2", t + 7, "1.0.0", step="refused", version="1.0.0", newest="1.1.0",
             reason="rolled back on this device before")
    # pump-3: deferred during an infusion, then its last will (offline)
    f.status("pump-3", t, fw="1.0.0")
    f.update("pump-3", t + 2, "1.0.0", step="deferred", version="1.1.0", action="install",
             reason="infusion running")
    assert f.last_will("pump-3", t + 3) == "status_unsealed"
    # mon-1: one record long ago (silent)
    f.status("mon-1", t - 2 * SILENT_AFTER_S, fw="0.9.0")
    yield f
    f.close()


def by_id(doc):
    return {d["device_id"]: d for d in doc["devices"]}


def test_devices(fleet):
    doc = fleet_status(fleet.workdir, now=fleet.t0 + 10)
    d = by_id(doc)
    assert sorted(d) == ["mon-1", "pump-1", "pump-2", "pump-3"]
    p1 = d["pump-1"]
    assert (p1["model"], p1["firmware"], p1["slot"], p1["link"]) == ("pump-v2", "1.1.0", "b", "online")
    assert (p1["update_step"], p1["update_version"], p1["last_rollback"]) == ("confirmed", "1.1.0", None)
    assert p1["last_seen"].endswith("Z") and p1["records"] >= 6
    assert p1["cert_not_after"] == fleet.pki.device("pump-1").not_after
    p2 = d["pump-2"]
    assert p2["slot"] == "a" and p2["firmware"] == "1.0.0"
    assert p2["last_rollback"]["version"] == "1.1.0"
    assert p2["last_rollback"]["reason"] == "broker unreachable"
    assert (p2["update_step"], p2["update_reason"]) == ("refused", "rolled back on this device before")
    p3 = d["pump-3"]
    assert p3["link"] == "offline" and p3["update_step"] == "deferred"
    assert p3["update_reason"] == "infusion running" and p3["slot"] == NOT_REPORTED
    m = d["mon-1"]
    assert (m["model"], m["link"]) == ("monitor-v1", "silent")
    assert m["silent_for_s"] >= 2 * SILENT_AFTER_S
    # no device sent a posture report or a security event: shown as not reported
    for dev in d.values():
        assert (dev["integrity"], dev["event_chain"], dev["console_lockouts"]) == (NOT_REPORTED,) * 3


def test_release_counts(fleet):
    rel = {(r["model"], r["version"]): r for r in fleet_status(fleet.workdir, now=fleet.t0 + 10)["releases"]}
    r = rel[("pump-v2", "1.1.0")]
    assert (r["confirmed"], r["rolled_back"], r["deferred"], r["running"]) == (1, 1, 1, 1)
    assert r["pending"] == r["downloading"] == r["installed"] == 0
    assert rel[("pump-v2", "1.0.0")]["running"] == 2
    assert rel[("monitor-v1", "0.9.0")]["running"] == 1


def test_security_fields_when_tables_exist(fleet, tmp_path):
    # A copy of the database (the collector made the security agent's tables)
    # with a posture report of a failed integrity scan.
    src = sqlite3.connect(fleet.workdir / "fleet.db")
    (tmp_path / "pki").symlink_to(fleet.workdir / "pki")
    dst = sqlite3.connect(tmp_path / "fleet.db")
    src.backup(dst)
    src.close()
    dst.execute("INSERT INTO posture (device_id, seq, t, integrity_ok, report, received_at) VALUES (?,?,?,?,?,?)",
                ("pump-1", 99, 0, 0, json.dumps({"console": {"lockouts": 2, "failed_logins": 7}}), 0))
    dst.commit()
    dst.close()
    d = by_id(fleet_status(tmp_path, now=fleet.t0 + 10))
    assert (d["pump-1"]["integrity"], d["pump-1"]["console_lockouts"]) == ("violation", 2)
    assert d["pump-1"]["event_chain"] == NOT_REPORTED  # no security event received
    assert d["pump-2"]["integrity"] == NOT_REPORTED


def test_cli(fleet, tmp_path):
    r = CliRunner().invoke(cli, ["--workdir", str(fleet.workdir), "fleet", "status", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert {d["device_id"] for d in doc["devices"]} == {"mon-1", "pump-1", "pump-2", "pump-3"}
    r = CliRunner().invoke(cli, ["--workdir", str(fleet.workdir), "fleet", "status"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert any(ln.startswith("pump-2 ") and "rolled back on this device before" in ln for ln in lines)
    assert any(ln.startswith("pump-v2 ") and " 1.1.0 " in ln for ln in lines)
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path), "fleet", "status"])
    assert r.exit_code == 1 and "no fleet database" in r.output and "Traceback" not in r.output
