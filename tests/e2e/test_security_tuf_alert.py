"""A TUF attack seen by a REAL board reaches the fleet as an alert (issue 12,
sections 2 and 5, end to end): the update server hands the board a timestamp.json
whose signature no longer verifies (its version raised after signing, as a
repository attacker without the timestamp key would); the board's TUF client
refuses it, the security monitor logs `tuf_failure` in the hash-chained event
log, the entries travel sealed through Mosquitto into the collector, and
`medsentry alerts` raises `tuf_failures` naming the device and the events.
A plain network failure afterwards (HTTP 503) is not logged as a TUF failure.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.collector import eventchain, security_db
from host_tools.collector.alerts import TUF_REPEAT, fleet_alerts
from host_tools.release.quickstart import ensure_models
from tests.e2e.telemetry_board_fixtures import board_fleet
from tests.e2e.test_security_board import wait
from tests.e2e.test_update_board import PASS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))
from tuf_repo import serve  # noqa: E402

DEVICE = "pump-sec1"  # the name test_security_board's wait() reports on
HEAP = "384k"  # the security monitor and a TUF refresh side by side (as test_security_board)


def tuf_failures(db) -> list[dict]:
    return [e for e in security_db.events(db, DEVICE) if e["kind"] == "tuf_failure"]


def test_bad_timestamp_signature_reaches_the_fleet_as_a_tuf_alert(tmp_path):
    work = tmp_path / "r"
    root = ensure_models(work, PASS, ("pump-v2",))
    ts = json.loads((work / "repository" / "metadata" / "timestamp.json").read_bytes())
    ts["signed"]["version"] += 1  # the signature no longer covers what is served
    with serve(work / "repository") as srv, board_fleet(tmp_path, [(DEVICE, "pump-v2")]) as f:
        srv.misbehave("/metadata/timestamp.json", "replace", data=json.dumps(ts).encode())
        port = f.start_board(DEVICE, "pump-v2", heap=HEAP)
        cfg = {"watchdog_ms": 30000, "posture": {"on": 1, "period_s": 60, "scan_s": 5, "min_gap_s": 1},
               "update": {"metadata_url": srv.url + "/metadata", "targets_url": srv.url + "/targets",
                          "check_every_s": 2}}
        f.provision(DEVICE, port, config=cfg, tuf_root=root.read_bytes(), reset=False)
        f.boards.reset(DEVICE)
        f.wait_telemetry(DEVICE, lambda t: t.get("connected"), 40, "connected to the broker")
        wait(lambda: len(tuf_failures(f.db)) >= TUF_REPEAT, 120, f"{TUF_REPEAT} tuf_failure events stored", f)
        fails = tuf_failures(f.db)
        assert all("signature" in (e["detail"] or "") for e in fails), [e["detail"] for e in fails]
        hist = f.boards.status(DEVICE)["update_history"]
        assert any(u.get("step") == "rejected" and u.get("reason", "").startswith("repository") for u in hist)
        assert not any(u.get("step") == "up_to_date" for u in hist)

        alerts = [a for a in fleet_alerts(f.db) if a.device == DEVICE and a.rule == "tuf_failures"]
        assert alerts, [a.as_dict() for a in fleet_alerts(f.db)]
        assert set(alerts[0].evidence) <= {e["n"] for e in fails} and len(alerts[0].evidence) >= TUF_REPEAT
        r = CliRunner().invoke(cli, ["--workdir", str(f.workdir), "alerts", "--json"])
        assert r.exit_code == 0, r.output
        assert any(a["device"] == DEVICE and a["rule"] == "tuf_failures" for a in json.loads(r.output))
        assert eventchain.verify_device(f.db, DEVICE).ok

        # The server now fails as a network does (503): the checks fail, and no TUF
        # failure is logged for them.
        k = len(security_db.events(f.db, DEVICE))
        srv.misbehave("/metadata/timestamp.json", "status", status=503)

        def failed_checks() -> list[int]:
            evs = security_db.events(f.db, DEVICE)[k:]
            return [i for i, e in enumerate(evs) if e["kind"] == "update_step" and '"check_failed"' in (e["detail"] or "")]
        wait(lambda: len(failed_checks()) >= 2, 90, "two failed checks logged after the server broke", f)
        after = security_db.events(f.db, DEVICE)[k:][failed_checks()[0]:]
        assert not [e for e in after if e["kind"] == "tuf_failure"], after


def test_impostor_broker_reaches_the_fleet_as_a_wrong_certificate_alert(tmp_path):
    """An on-path attacker answers on the broker's address with a Mosquitto whose
    certificate another CA signed. The board refuses the handshake, logs a
    `tls_failure` about the broker, and once the real broker is back the entry
    arrives and the collector raises `wrong_broker_cert`."""
    from host_tools.broker import Broker
    from host_tools.pki import FleetPKI

    impostor_pki = FleetPKI(tmp_path / "i")
    impostor_pki.init()
    with board_fleet(tmp_path, [(DEVICE, "pump-v2")]) as f:
        port = f.start_board(DEVICE, "pump-v2", heap=HEAP)
        cfg = {"watchdog_ms": 30000, "posture": {"on": 1, "period_s": 60, "scan_s": 5, "min_gap_s": 1}}
        f.provision(DEVICE, port, config=cfg, reset=False)
        f.boards.reset(DEVICE)
        f.wait_telemetry(DEVICE, lambda t: t.get("connected"), 40, "connected to the broker")
        wait(lambda: security_db.events(f.db, DEVICE), 60, "the boot event stored", f)
        f.broker.stop()
        impostor = Broker(impostor_pki, tmp_path / "ib", port=f.broker.port)
        impostor.start()
        try:
            f.wait_telemetry(DEVICE, lambda t: not t.get("connected") and t.get("last_error"), 30,
                             "a failed connection to the impostor")
            wait(lambda: (f.boards.status(DEVICE).get("device") or {}).get("security", {}).get("events_logged", 0)
                 > len(security_db.events(f.db, DEVICE)) + 1, 40, "new events logged on the board", f)
            err = f.telemetry(DEVICE).get("last_error")
        finally:
            impostor.stop()
        f.broker.start()
        f.wait_telemetry(DEVICE, lambda t: t.get("connected"), 60, "back on the real broker")
        wait(lambda: [e for e in security_db.events(f.db, DEVICE) if e["kind"] == "tls_failure"], 60,
             f"the tls_failure event stored (board error: {err})", f)
        tls = [e for e in security_db.events(f.db, DEVICE) if e["kind"] == "tls_failure"]
        detail = json.loads(tls[0]["detail"])
        assert detail["peer"] == "broker", tls
        assert "certificate" in detail["reason"], (detail, err)  # the fault, not the error's wrappers
        alerts = [a for a in fleet_alerts(f.db) if a.device == DEVICE and a.rule == "wrong_broker_cert"]
        assert alerts and alerts[0].evidence == [e["n"] for e in tls], [a.as_dict() for a in fleet_alerts(f.db)]
        assert eventchain.verify_device(f.db, DEVICE).ok
