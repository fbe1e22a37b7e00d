"""Issue 14 item 4 (export part): readable telemetry export from a real fleet.db.

ISO 8601 UTC times, units in column names, the device id, several devices at
once, --since/--until, and gaps (sequence holes) marked as lines of their own.
"""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from host_tools.cli.main import cli

from fleet_fixtures import Fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("export"))
    f.issue("pump-1", "pump-v2")
    f.issue("mon-1", "monitor-v1")
    t = int(f.t0)
    for i in range(6):
        f.vitals("pump-1", t + i, hr=60 + i, pump={"state": "infusing", "rate": 12.5, "vtbi": 100.0,
                                                   "infused": float(i), "alarms": []})
    f.seq["pump-1"] += 3  # three records never arrive: seq 7-9
    f.vitals("pump-1", t + 10, hr=99)
    f.vitals("mon-1", t + 1, hr=80)
    yield f
    f.close()


def run(fleet, *args):
    r = CliRunner().invoke(cli, ["--workdir", str(fleet.workdir), "telemetry", "export", *args])
    assert r.exit_code == 0, r.output
    return r.output


def test_readable_csv_with_gap(fleet):
    rows = list(csv.DictReader(io.StringIO(run(fleet, "pump-1"))))
    assert list(rows[0])[:4] == ["device_id", "seq", "time_utc", "hr_bpm"]
    assert {"spo2_pct", "temp_degC", "pump_rate_ml_per_h", "pump_infused_ml", "gap"} <= set(rows[0])
    recs = [r for r in rows if not r["gap"]]
    assert [r["hr_bpm"] for r in recs] == ["60", "61", "62", "63", "64", "65", "99"]
    assert {r["device_id"] for r in rows} == {"pump-1"}
    first = datetime.fromtimestamp(int(fleet.t0), timezone.utc)
    assert recs[0]["time_utc"] == first.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    gaps = [r for r in rows if r["gap"]]
    assert [(r["seq"], r["gap"]) for r in gaps] == [("7", "missing 7-9")]
    assert [r["seq"] for r in rows] == ["1", "2", "3", "4", "5", "6", "7", "10"]


def test_several_devices_and_window(fleet):
    t = int(fleet.t0)
    since = datetime.fromtimestamp(t + 2, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = datetime.fromtimestamp(t + 4, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")  # no zone: UTC
    rows = list(csv.DictReader(io.StringIO(run(fleet, "--all", "--since", since, "--until", until))))
    assert [(r["device_id"], r["hr_bpm"]) for r in rows if not r["gap"]] == \
        [("pump-1", "62"), ("pump-1", "63"), ("pump-1", "64")]
    doc = json.loads(run(fleet, "pump-1", "mon-1", "--format", "json"))
    assert [d["device_id"] for d in doc["devices"]] == ["pump-1", "mon-1"]
    assert doc["devices"][0]["units"]["hr"] == "bpm" and doc["devices"][0]["missing"] == [[7, 9]]
    assert doc["devices"][1]["records"][0]["time_utc"].endswith("Z")


def test_raw_and_bad_input(fleet):
    assert run(fleet, "pump-1", "--raw").startswith("seq,t,hr,")
    r = CliRunner().invoke(cli, ["--workdir", str(fleet.workdir), "telemetry", "export", "pump-1",
                                 "--since", "yesterday"])
    assert r.exit_code == 2 and "ISO 8601" in r.output
    r = CliRunner().invoke(cli, ["--workdir", str(fleet.workdir), "telemetry", "export"])
    assert r.exit_code == 2 and "--all" in r.output
