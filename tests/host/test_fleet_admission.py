"""Issue 17 §3: `fleet status` shows each device's segment and admission decision and why.

Records are sealed with the devices' real keys and go through the real Ingestor;
the decision is the NAC policy's (host_tools/nac/policy.py) over that fleet.db.
"""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.fleet import fleet_status

from fleet_fixtures import Fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("adm"))
    for dev in ("pump-ok", "pump-bad", "pump-rev"):
        f.issue(dev, "pump-v2")
    t = f.t0
    for dev in ("pump-ok", "pump-bad", "pump-rev"):
        assert f.status(dev, t, fw="1.0.0") == "accepted"
    assert f.status("pump-ok", t + 1, "posture", integrity={"ok": True}) == "accepted"
    assert f.status("pump-bad", t + 1, "posture", integrity={"ok": False}) == "accepted"
    f.pki.revoke("pump-rev")
    yield f
    f.close()


def test_status_admission(fleet):
    d = {x["device_id"]: x for x in fleet_status(fleet.workdir, now=fleet.t0 + 10)["devices"]}
    ok, bad, rev = d["pump-ok"], d["pump-bad"], d["pump-rev"]
    assert (ok["segment"], ok["admission"], ok["admission_reason"]) == ("pump-v2", "admit", "healthy")
    assert (bad["segment"], bad["admission"]) == ("quarantine", "quarantine")
    assert "integrity" in bad["admission_reason"]
    assert (rev["segment"], rev["admission"]) == (None, "refuse")
    assert "revoked" in rev["admission_reason"]


def test_status_admission_cli(fleet):
    r = CliRunner().invoke(cli, ["--workdir", str(fleet.workdir), "fleet", "status", "--json"])
    assert r.exit_code == 0, r.output
    d = {x["device_id"]: x for x in json.loads(r.output)["devices"]}
    assert d["pump-bad"]["admission"] == "quarantine"
    r = CliRunner().invoke(cli, ["--workdir", str(fleet.workdir), "fleet", "status"])
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if "pump-bad" in ln)
    assert "quarantine" in line and "integrity" in line


def test_assess_admission_json_and_html(fleet, tmp_path):
    import jsonschema

    from host_tools.fleet.assess import json_schema

    out = tmp_path / "r.html"
    r = CliRunner().invoke(cli, ["--workdir", str(fleet.workdir), "assess", "--json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    jsonschema.validate(rep, json_schema())
    d = {x["device_id"]: x for x in rep["devices"]}
    assert (d["pump-bad"]["segment"], d["pump-bad"]["admission"]) == ("quarantine", "quarantine")
    assert d["pump-rev"]["admission"] == "refuse" and "revoked" in d["pump-rev"]["admission_reason"]
    html = out.read_text()
    assert "quarantine: " in html and "refuse: certificate revoked" in html
