"""Fleet-side alert rules (issue 12 section 5), one device per rule, stored
through the collector's own record path (FleetDB.status -> security_db)."""
from __future__ import annotations

import hashlib
import json

from click.testing import CliRunner

from agent.security.eventlog import EventLog
from host_tools.cli.main import cli
from host_tools.collector import FleetDB
from host_tools.collector.alerts import fleet_alerts
from host_tools.collector.records import Status

NOW = 1_800_000_000.0


class Dev:
    def __init__(self, db: FleetDB, tmp, name: str) -> None:
        self.db, self.name, self.seq = db, name, 0
        self.log = EventLog(str(tmp / name))

    def _status(self, state: str, extra: dict, at: float) -> int:
        self.seq += 1
        with self.db.transaction() as tx:
            tx.touch_device(self.name, at)
            tx.status(self.name, Status(seq=self.seq, state=state, t=at, extra=extra), at)
        return self.seq

    def event(self, kind: str, detail: dict | None = None, t: float = NOW - 100, sev: str = "warning") -> int:
        n, e, _ = self.log.append(kind, sev, detail, int(t))
        self._status("event", {"e": e}, NOW - 50)
        return n

    def posture(self, at: float = NOW - 10, **fields) -> int:
        rep = {"ev": [self.log.head_n, self.log.head_h], "integrity": {"ok": True, "bad": []}, "period_s": 300}
        rep.update(fields)
        return self._status("posture", rep, at)


def rules(db) -> dict[tuple[str, str], list[int]]:
    return {(a.device, a.rule): a.evidence for a in fleet_alerts(db, NOW)}


def test_each_rule_fires_on_its_device_only(tmp_path):
    db = FleetDB(tmp_path / "fleet.db")
    ok = Dev(db, tmp_path, "ok")
    ok.event("boot", sev="info")
    ok.event("tuf_failure", {"reason": "repository: bad signature"})  # one failure is not "repeated"
    ok.posture()
    integ = Dev(db, tmp_path, "integ")
    n = integ.event("integrity_violation", {"files": 1, "first": "~agent/main.mpy"}, sev="critical")
    integ.posture(integrity={"ok": False, "bad": ["~agent/main.mpy"]})
    tuf = Dev(db, tmp_path, "tuf")
    tn = [tuf.event("tuf_failure", {"reason": "repository: rollback"}, t=NOW - 100 + i) for i in range(3)]
    tuf.posture()
    tls = Dev(db, tmp_path, "tls")
    ln = tls.event("tls_failure", {"peer": "broker", "reason": "certificate verify failed"})
    tls.posture()
    storm = Dev(db, tmp_path, "storm")
    sn = [storm.event("boot", {"boot": i}, t=NOW - 500 + 60 * i, sev="info") for i in range(5)]
    storm.posture()
    egress = Dev(db, tmp_path, "egress")
    en = egress.event("egress_blocked", {"to": "203.0.113.9:80"})
    egress.posture()
    lock = Dev(db, tmp_path, "lock")
    lock.event("console_lockout", {"user": "biomed"})
    lock.posture()
    silent = Dev(db, tmp_path, "silent")
    ps = silent.posture(at=NOW - 3600)
    got = rules(db)
    assert got.pop(("integ", "integrity_violation")) == [n]
    assert got.pop(("tuf", "tuf_failures")) == tn
    assert got.pop(("tls", "wrong_broker_cert")) == [ln]
    assert got.pop(("storm", "reboot_storm")) == sn
    assert got.pop(("egress", "egress_blocked")) == [en]
    assert got.pop(("lock", "console_lockout")) == [1]
    assert got.pop(("silent", "silent")) == [ps]
    assert got == {}, got


def test_broken_chain_and_slow_boots_and_cli(tmp_path):
    db = FleetDB(tmp_path / "w" / "fleet.db")
    d = Dev(db, tmp_path, "pump-7")
    for i in range(5):  # five boots, but an hour apart: no storm
        d.event("boot", {"boot": i}, t=NOW - 20000 + 3600 * i, sev="info")
    # The device's head says 6 entries; entry 6 never arrived.
    d.log.append("clock_jump", "warning", {"by_s": 999}, int(NOW))
    d.posture()
    db.close()
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path / "w"), "alerts", "--json"])
    assert r.exit_code == 0, r.output
    alerts = json.loads(r.output)
    assert [(a["device"], a["rule"], a["evidence"]) for a in alerts] == [("pump-7", "broken_chain", [6])]
    assert alerts[0]["time_iso"].endswith("Z") and "entry 6" in alerts[0]["detail"]
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path / "w"), "alerts"])
    assert "broken_chain" in r.output and "pump-7" in r.output
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path / "nowhere"), "alerts"])
    assert r.exit_code == 1 and "no fleet database" in r.output and "Traceback" not in r.output


def test_wrong_broker_cert_reads_the_peer_field_not_the_text(tmp_path):
    """A TLS failure of the UPDATE server whose reason is the word "broker" (an
    update server named so, a truncated error) is not a wrong broker certificate:
    the rule matched the text '"broker"' anywhere in the JSON detail before. A
    failure whose peer is the broker is."""
    db = FleetDB(tmp_path / "fleet.db")
    upd = Dev(db, tmp_path, "upd")
    upd.event("tls_failure", {"peer": "update", "reason": "broker"})
    upd.posture()
    brk = Dev(db, tmp_path, "brk")
    n = brk.event("tls_failure", {"peer": "broker", "reason": "certificate verify failed"})
    brk.posture()
    got = rules(db)
    assert ("upd", "wrong_broker_cert") not in got
    assert got[("brk", "wrong_broker_cert")] == [n]


def test_telemetry_flood_names_the_device_and_the_count(tmp_path):
    db = FleetDB(tmp_path / "fleet.db")
    Dev(db, tmp_path, "calm").posture()
    flood = Dev(db, tmp_path, "flood")
    flood.posture()
    with db.transaction() as tx:
        tx.bump("flood", "flood_shed", 1234)
    got = rules(db)
    assert got[("flood", "telemetry_flood")] == [1234]
    assert ("calm", "telemetry_flood") not in got
