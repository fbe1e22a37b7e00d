"""Issue 14 sections 1 and 4: `fleet status` counts the devices a release is
pending on (the repository offers it to them now, they have not started), from
the collector's database and the repository's signed targets - nothing typed in
- and shows each device's updates on/off as its own reports say.

Real parts: a release repository written by the release tools (a package built
with mpy-cross, published and one held), records sealed with the devices' keys
through the real Ingestor.
"""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.fleet import fleet_status
from host_tools.fleet.published import offered
from host_tools.fleet.status import NOT_REPORTED
from host_tools.release.quickstart import DemoPassphrases, device_tree, ensure_models, publish_tree

from fleet_fixtures import Fleet

PASS = DemoPassphrases("fleet-pending")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("pending"))
    ensure_models(f.workdir, PASS, ("pump-v2",))
    trees = tmp_path_factory.mktemp("trees")
    publish_tree(f.workdir, PASS, "pump-v2", "1.1.0", 2, device_tree(trees / "a", {"agent/r.txt": b"1.1\n"}))
    publish_tree(f.workdir, PASS, "pump-v2", "1.2.0", 3, device_tree(trees / "b", {"agent/r.txt": b"1.2\n"}),
                 held=True)  # signed, offered to no device yet (rollout stage 0)
    for dev in ("p-new", "p-dl", "p-done", "p-off", "p-avail"):
        f.issue(dev, "pump-v2")
    f.issue("mon-1", "monitor-v1")
    t = f.t0
    f.status("p-new", t, fw="1.0.0")                                   # offered 1.1.0, no report yet
    f.status("p-dl", t, fw="1.0.0")
    f.update("p-dl", t + 1, "1.0.0", step="downloading", version="1.1.0", done=1, files=9)
    f.status("p-done", t, fw="1.1.0")                                  # runs it already
    f.status("p-off", t, fw="1.0.0")
    f.update("p-off", t + 1, "1.0.0", step="off", version="1.0.0",
             reason="no update URL (update.metadata_url in config.json)")
    f.status("p-avail", t, fw="1.0.0")
    f.update("p-avail", t + 1, "1.0.0", step="checking", version="1.0.0")
    f.update("p-avail", t + 2, "1.0.0", step="available", version="1.1.0")
    f.status("mon-1", t, fw="1.0.0")                                   # no monitor release published
    f.db.conn.commit()
    yield f
    f.close()


def test_the_repository_offers_what_the_model_roles_list(fleet):
    rel = {c["version"]: c for c in offered(fleet.workdir / "repository")["pump-v2"]}
    assert sorted(rel) == ["1.1.0", "1.2.0"]
    assert rel["1.2.0"]["rollout_percent"] == 0 and "rollout_percent" not in rel["1.1.0"]


def test_pending_counts_devices_offered_the_release_that_have_not_started(fleet):
    doc = fleet_status(fleet.workdir, now=fleet.t0 + 10)
    rel = {(r["model"], r["version"]): r for r in doc["releases"]}
    r = rel[("pump-v2", "1.1.0")]
    # p-new (no report) and p-avail (found it, not started); p-dl started; p-off never checks
    assert (r["pending"], r["downloading"], r["running"]) == (2, 1, 1), r
    assert ("pump-v2", "1.2.0") not in rel  # held: offered to nobody, nobody reported on it
    assert not any(k[0] == "monitor-v1" and k[1] != "1.0.0" for k in rel)


def test_updates_on_off_per_device(fleet):
    d = {x["device_id"]: x for x in fleet_status(fleet.workdir, now=fleet.t0 + 10)["devices"]}
    assert d["p-off"]["updates"] == "off" and "no update URL" in d["p-off"]["updates_off_reason"]
    assert d["p-dl"]["updates"] == d["p-avail"]["updates"] == "on"
    assert d["p-new"]["updates"] == NOT_REPORTED
    out = CliRunner().invoke(cli, ["--workdir", str(fleet.workdir), "fleet", "status"])
    assert out.exit_code == 0, out.output
    line = next(ln for ln in out.output.splitlines() if ln.startswith("p-off "))
    assert " off " in line and "no update URL" in line
    js = json.loads(CliRunner().invoke(cli, ["--workdir", str(fleet.workdir), "fleet", "status", "--json"]).output)
    assert {x["device_id"]: x["updates"] for x in js["devices"]}["p-off"] == "off"
