"""Issue 15: the fleet view and the exports read the PostgreSQL fleet store too.

One story of sealed records (real PKI keys, AES-CCM, the real Ingestor) is stored
twice, into SQLite and into a real PostgreSQL 15 server; every reader (fleet
status, assess, alerts, events verify, telemetry export, command results) must
give the same answer from either store. The work directory says which store it
uses the way an operator sets it up: `medsentry collector --db URL` records the URL
(``fleet-db.url``), and $MEDSENTRY_DB overrides it.
"""
from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from click.testing import CliRunner

from agent.security.eventlog import EventLog
from host_tools.cli.main import cli
from host_tools.collector import FleetDB, Ingestor
from host_tools.collector.alerts import fleet_alerts
from host_tools.collector.dbconn import DB_URL_FILE, fleet_db, record_fleet_db
from host_tools.collector.pg_local import LocalPostgres
from host_tools.fleet import FleetReader, ReaderError, fleet_status
from host_tools.fleet.assess import assess
from host_tools.nac.policy import fleet_findings

from fleet_fixtures import Fleet


@pytest.fixture(scope="module")
def pg():
    server = LocalPostgres().start()
    yield server
    server.cleanup()


class Tee:
    """The same record into both stores; both must judge it alike."""

    def __init__(self, *ings: Ingestor) -> None:
        self.ings = ings

    def handle(self, topic: str, payload: bytes, now: float | None = None):
        outs = [i.handle(topic, payload, now=now) for i in self.ings]
        assert len({o.kind for o in outs}) == 1, [o.kind for o in outs]
        return outs[0]


@pytest.fixture(scope="module")
def stores(tmp_path_factory, pg, monkeypatch_module):
    monkeypatch_module.delenv("MEDSENTRY_DB", raising=False)
    wd = tmp_path_factory.mktemp("fleet")
    name = "t" + uuid.uuid4().hex[:10]
    with psycopg.connect(pg.url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = pg.url.rsplit("/", 1)[0] + "/" + name
    f = Fleet(wd)
    pgdb = FleetDB(url)
    f.ing = Tee(f.ing, Ingestor(f.pki, pgdb))
    for dev in ("pump-1", "pump-2"):
        f.issue(dev, "pump-v2")
    f.issue("mon-1", "monitor-v1")
    t = f.t0
    f.status("pump-1", t, fw="1.0.0")
    for i in range(5):
        assert f.vitals("pump-1", t + 1 + i, hr=70 + i) == "accepted"
    f.update("pump-1", t + 6, "1.0.0", step="installed", version="1.1.0", slot="b")
    f.update("pump-1", t + 7, "1.1.0", step="confirmed", version="1.1.0")
    f.status("pump-2", t, fw="1.0.0")
    f.vitals("pump-2", t + 1)
    f.seq["pump-2"] += 3  # a gap the collector must record, in both stores
    f.vitals("pump-2", t + 2)
    f.update("pump-2", t + 3, "1.1.0", step="rolling_back", version="1.1.0", reason="self-test failed")
    # security events and a posture report from mon-1 (its real chained log)
    log = EventLog(str(tmp_path_factory.mktemp("mon-1-log")))
    for i in range(3):
        _, e, _ = log.append("tuf_failure", "warning", {"reason": "repository: bad signature"}, int(t) - 100 + i)
        f.status("mon-1", t + i, "event", e=e)
    f.status("mon-1", t + 4, "posture", fw="0.9.0", ev=[log.head_n, log.head_h],
             integrity={"ok": True, "bad": []}, period_s=300)
    f.db.close()
    pgdb.close()
    yield f, url
    (wd / DB_URL_FILE).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def on(wd, url):
    """Point the work directory at `url` as `collector --db` does (None: SQLite).
    While it points at PostgreSQL the SQLite file is moved aside, so a reader that
    ignored the setting would fail instead of passing on the other store's data."""
    lite, aside = wd / "fleet.db", wd / "fleet.db.aside"
    if url is None and aside.exists():
        aside.rename(lite)
    elif url is not None and lite.exists():
        lite.rename(aside)
    record_fleet_db(wd, url)
    return fleet_db(wd)


def test_work_directory_names_its_store(stores, monkeypatch):
    f, url = stores
    assert on(f.workdir, None) == str(f.workdir / "fleet.db")
    assert not (f.workdir / DB_URL_FILE).exists()
    assert on(f.workdir, url) == url
    assert (f.workdir / DB_URL_FILE).stat().st_mode & 0o077 == 0  # may carry a password
    monkeypatch.setenv("MEDSENTRY_DB", f"sqlite:///{f.workdir}/fleet.db")
    assert fleet_db(f.workdir) == f"sqlite:///{f.workdir}/fleet.db"
    monkeypatch.delenv("MEDSENTRY_DB")
    on(f.workdir, None)


def test_fleet_status_and_assessment_are_the_same_from_either_store(stores):
    f, url = stores
    now = f.t0 + 20
    on(f.workdir, None)
    lite_status, lite_assess = fleet_status(f.workdir, now=now), assess(f.workdir, None, now=now)
    on(f.workdir, url)
    pg_status, pg_assess = fleet_status(f.workdir, now=now), assess(f.workdir, None, now=now)
    assert pg_status == lite_status
    assert pg_assess == lite_assess
    d = {x["device_id"]: x for x in pg_status["devices"]}
    assert d["pump-1"]["firmware"] == "1.1.0" and d["mon-1"]["event_chain"] == "ok"
    assert pg_status["security_tables"] is True


def test_cli_readers_give_the_same_output_from_either_store(stores):
    f, url = stores
    runs = {}
    for which, target in (("sqlite", None), ("postgresql", url)):
        on(f.workdir, target)
        out = {}
        for args in (["telemetry", "export", "--all", "--format", "json"],
                     ["telemetry", "export", "pump-2", "--raw"],
                     ["events", "verify", "mon-1", "--json"],
                     ["events", "list", "mon-1"],
                     ["fleet", "status", "--json"]):
            r = CliRunner().invoke(cli, ["--workdir", str(f.workdir), *args])
            assert r.exit_code == 0, (which, args, r.output)
            out[" ".join(args)] = r.output
        runs[which] = out
    status = {k: json.loads(v["fleet status --json"]) for k, v in runs.items()}
    for doc in status.values():  # the one field that depends on when the command ran
        doc.pop("generated_at")
        for dev in doc["devices"]:
            dev.pop("last_seen_s", None)
    assert status["postgresql"] == status["sqlite"]
    for key in runs["sqlite"]:
        if key != "fleet status --json":
            assert runs["postgresql"][key] == runs["sqlite"][key], key
    assert json.loads(runs["postgresql"]["events verify mon-1 --json"])["ok"] is True
    assert '"hr": 74' in runs["postgresql"]["telemetry export --all --format json"]


def test_alerts_from_either_store(stores):
    f, url = stores
    now = f.t0 + 20
    got = {}
    for which, target in (("sqlite", None), ("postgresql", url)):
        db = FleetDB(on(f.workdir, target))
        got[which] = [a.as_dict() for a in fleet_alerts(db, now)]
        db.close()
    assert got["postgresql"] == got["sqlite"]
    assert any(a["device"] == "mon-1" and a["rule"] == "tuf_failures" for a in got["postgresql"])


def test_the_fleet_view_cannot_write_the_store(stores):
    f, url = stores
    reader = FleetReader(on(f.workdir, url))
    try:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader.conn.execute("DELETE FROM vitals")
    finally:
        reader.close()
    db = FleetDB(url)
    assert len(db.vitals("pump-1")) == 5
    db.close()


def test_a_bad_or_unreachable_store_is_a_clear_error(stores, pg, monkeypatch):
    f, _ = stores
    for bad, words in (("mysql://x/y", "unsupported database URL"),
                       (pg.url.rsplit("/", 1)[0] + "/no_such_db", "cannot read the fleet store")):
        (f.workdir / DB_URL_FILE).write_text(bad + "\n")
        r = CliRunner().invoke(cli, ["--workdir", str(f.workdir), "fleet", "status"])
        assert r.exit_code == 1 and words in r.output and "Traceback" not in r.output, r.output
        with pytest.raises(ReaderError):
            FleetReader(bad)
    monkeypatch.setenv("MEDSENTRY_DB", "mysql://x/y")
    r = CliRunner().invoke(cli, ["--workdir", str(f.workdir), "telemetry", "export", "--all"])
    assert r.exit_code == 1 and "unsupported database URL" in r.output and "Traceback" not in r.output


def test_network_admission_reads_the_postgresql_store(stores):
    """Attack: a board whose integrity scan failed must not be admitted to its
    clinical segment because the fleet store is PostgreSQL (before this, NAC read only
    <workdir>/fleet.db: no file, no finding, admitted)."""
    f, url = stores
    on(f.workdir, url)
    db = FleetDB(url)
    f.ing = Ingestor(f.pki, db)
    try:
        assert f.status("pump-2", f.t0 + 30, "posture", fw="1.0.0", ev=[0, b""],
                        integrity={"ok": False, "bad": ["~agent/main.mpy"]}, period_s=300) == "accepted"
    finally:
        db.close()
    found = fleet_findings(f.workdir, now=f.t0 + 40)
    assert "integrity violation: latest posture report" in found["pump-2"]
    assert "integrity violation: latest posture report" not in found.get("pump-1", [])
    on(f.workdir, None)  # the SQLite store never saw that report
    assert "pump-2" not in fleet_findings(f.workdir, now=f.t0 + 40)
