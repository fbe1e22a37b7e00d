"""802.1X admission on the fleet PKI: a real FreeRADIUS answers a real supplicant
(eapol_test, EAP-TLS with the device's certificate and key) with the VLAN the
fleet data calls for, and refuses what it must."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.collector.db import FleetDB
from host_tools.collector.dbconn import DB_URL_FILE
from host_tools.nac.eapol import admit
from host_tools.nac.policy import set_quarantine
from host_tools.nac.runner import Radius
from host_tools.network.config import load_config
from host_tools.pki import FleetPKI

pytestmark = pytest.mark.skipif(
    not (shutil.which("freeradius") or shutil.which("/usr/sbin/freeradius")) or not shutil.which("eapol_test"),
    reason="freeradius / eapoltest not installed (make setup installs them)")

VLAN_PUMP, VLAN_MON, VLAN_Q = 120, 110, 999  # default_config: sorted models monitor-v1, pump-v2


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    work = tmp_path_factory.mktemp("nac")
    pki = FleetPKI(work / "w")
    pki.init()
    for dev, model in (("pump-1", "pump-v2"), ("mon-1", "monitor-v1"), ("pump-q", "pump-v2"),
                       ("pump-r", "pump-v2"), ("pump-old", "pump-v2"), ("pump-2", "pump-v2")):
        pki.issue(dev, model)
    pki.issue("pump-x", "pump-v2", not_after="2025-01-01T00:00:00+00:00")   # expired
    pki.revoke("pump-r")
    # Fleet data: a quarantine command, and a device running recalled firmware.
    db = FleetDB(pki.workdir / "fleet.db")
    db.conn.execute("INSERT INTO devices (device_id, fw, last_seen) VALUES ('pump-old', '1.2.0', ?)",
                    (time.time(),))
    db.close()
    (pki.workdir / "release").mkdir()
    (pki.workdir / "release" / "recalls.json").write_text(json.dumps(
        {"recalls": [{"model": "pump-v2", "version": "1.2.0", "reason": "CVE"}]}))
    set_quarantine(pki.workdir / "fleet.db", "pump-q", "operator: suspicious traffic")
    foreign = FleetPKI(work / "foreign")
    foreign.init()
    foreign.issue("pump-1", "pump-v2")            # same CN, another CA
    cfg = load_config(pki.workdir, ["pump-v2", "monitor-v1"])
    radius = Radius(pki, cfg, work / "radius")
    radius.start()
    try:
        yield pki, foreign, radius
    finally:
        radius.stop()


def _admit(radius, ident, identity=None, with_cert=True):
    return admit(radius.host, radius.port, radius.secret, identity or ident.name, ca=ident.ca,
                 cert=ident.cert if with_cert else None, key=ident.key if with_cert else None)


@pytest.mark.parametrize("dev, vlan", [
    ("pump-1", VLAN_PUMP),     # healthy pump: its model's clinical segment
    ("mon-1", VLAN_MON),       # a monitor: the monitors' segment
    ("pump-q", VLAN_Q),        # a quarantine command
    ("pump-old", VLAN_Q),      # running recalled firmware
])
def test_admitted_device_gets_the_vlan_the_fleet_data_calls_for(fleet, dev, vlan):
    pki, _f, radius = fleet
    a = _admit(radius, pki.device_identity(dev))
    assert a.accepted and a.vlan == vlan and a.tunnel_type == 13, a.output[-2000:]


def test_revoked_certificate_is_refused(fleet):
    pki, _f, radius = fleet
    a = _admit(radius, pki.device_identity("pump-r"))
    assert not a.accepted and a.vlan is None
    assert "Access-Reject" in a.output


def test_foreign_ca_with_a_fleet_name_is_refused(fleet):
    pki, foreign, radius = fleet
    ident = foreign.device_identity("pump-1")
    # The supplicant trusts our CA (it talks to our server); its cert is foreign.
    a = admit(radius.host, radius.port, radius.secret, "pump-1", ca=pki.ca_cert_path,
              cert=ident.cert, key=ident.key)
    assert not a.accepted and a.vlan is None


@pytest.mark.parametrize("who, with_cert", [
    ("pump-x", True),       # expired certificate
    ("pump-1", False),      # no certificate at all
    ("operator", True),     # a fleet service certificate is not a device
])
def test_expired_missing_or_service_certificate_is_refused(fleet, who, with_cert):
    pki, _f, radius = fleet
    ident = pki.client_identity(who) if who == "operator" else pki.device_identity(who)
    a = _admit(radius, ident, with_cert=with_cert)
    assert not a.accepted and a.vlan is None


def test_decision_changes_on_next_admission_after_refresh(fleet):
    pki, _f, radius = fleet
    ident = pki.device_identity("pump-2")
    assert _admit(radius, ident).vlan == VLAN_PUMP
    set_quarantine(pki.workdir / "fleet.db", "pump-2", "integrity alert")
    radius.refresh()
    a = _admit(radius, ident)
    assert a.accepted and a.vlan == VLAN_Q, a.output[-2000:]
    pki.revoke("pump-2")   # new CRL: refused after the restart that reloads it
    radius.refresh()
    assert not _admit(radius, ident).accepted


class NacRun:
    """`medsentry nac run` for one pump in a fresh work directory: ``vlan()`` admits
    it over EAP-TLS, ``out`` is the process output once it stopped."""

    def __init__(self, tmp_path, refresh: float) -> None:
        self.work = tmp_path / "w"
        pki = FleetPKI(self.work)
        pki.init()
        pki.issue("pump-1", "pump-v2")
        self.ident = pki.device_identity("pump-1")
        self.refresh = refresh
        self.out = ""

    def __enter__(self) -> "NacRun":
        self.proc = subprocess.Popen([sys.executable, "-m", "host_tools.cli.main", "--workdir", str(self.work),
                                      "nac", "run", "--refresh", str(self.refresh), "--duration", "60"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        addr = self.work / "nac" / "address.json"
        deadline = time.monotonic() + 20
        while not addr.exists():
            assert self.proc.poll() is None and time.monotonic() < deadline, "nac run did not start"
            time.sleep(0.1)
        self.where = json.loads(addr.read_text())
        self.secret = (self.work / "nac" / "run" / "secret").read_text().strip()
        return self

    def vlan(self) -> int | None:
        return admit(self.where["host"], self.where["port"], self.secret, "pump-1", ca=self.ident.ca,
                     cert=self.ident.cert, key=self.ident.key).vlan

    def quarantine_and_wait(self, why: str) -> None:
        r = CliRunner().invoke(cli, ["--workdir", str(self.work), "nac", "quarantine", "pump-1",
                                     "--reason", "integrity alert"])
        assert r.exit_code == 0, r.output
        deadline = time.monotonic() + 20
        while self.vlan() != VLAN_Q:
            assert time.monotonic() < deadline, why
            time.sleep(0.3)

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.out = self.proc.communicate(timeout=20)[0].decode()


def test_nac_run_keeps_serving_while_the_fleet_store_is_unreadable(tmp_path):
    """Fault: the fleet store goes away under `nac run` (a database restart; here a
    store URL that cannot be read). Before, the next refresh raised and `nac run`
    stopped FreeRADIUS: every device lost network admission. Now devices keep the
    decisions already made, a warning says why at every check, and decisions follow
    the fleet data again once it is readable."""
    with NacRun(tmp_path, refresh=0.3) as nac:
        assert nac.vlan() == 110  # a lone pump-v2 model: the first clinical VLAN
        (nac.work / DB_URL_FILE).write_text("postgresql://nobody@127.0.0.1:1/fleet\n")  # nothing listens
        time.sleep(2.0)  # several refresh checks against the unreadable store
        assert nac.proc.poll() is None, "nac run stopped when the fleet store went away"
        assert nac.vlan() == 110
        (nac.work / DB_URL_FILE).unlink()
        nac.quarantine_and_wait("decisions did not follow the readable store again")
    assert nac.proc.returncode == 0, nac.out
    assert "warning: fleet data unreadable, keeping the current decisions" in nac.out


def test_nac_run_cli_follows_a_quarantine_command(tmp_path):
    """`medsentry nac run` serves on loopback, re-reads the fleet data, and stops
    FreeRADIUS on SIGTERM."""
    with NacRun(tmp_path, refresh=0.5) as nac:
        assert nac.vlan() == 110
        nac.quarantine_and_wait("decision did not follow the quarantine command")
    work = nac.work
    assert nac.proc.returncode == 0, nac.out
    assert "reloading decisions" in nac.out and not (work / "nac" / "address.json").exists()
    rad_pid = subprocess.run(["pgrep", "-f", str(work / "nac" / "run" / "raddb")],
                             capture_output=True, text=True).stdout.strip()
    assert rad_pid == "", f"freeradius left running: {rad_pid}"
