"""Simulated boards inside the segmented network (issue 17 §2, on real boards).

The world of test_network_segmentation (router namespace applying the generated
nftables ruleset, a ward port, the quarantine VLAN, a core with a real Mosquitto,
`repo serve --tls` and the collector) with real simulated boards in it: the
board's supervisor and MicroPython VM run inside the ward namespace (`sim start
--netns`), so every packet of the board crosses the router. The board is
provisioned with `device provision --from-network` (broker and update server from
the same network.json the ruleset comes from) and:

- streams sealed telemetry to the broker and the collector stores it, and takes a
  signed update from the update server, all through the router;
- moved to the quarantine VLAN (restarted in the quarantine namespace, as a switch
  would move its port), it cannot reach the broker (the router drops it and counts
  the drop) yet still installs the next patch from the update server.
"""
from __future__ import annotations

import os
import sys
import time

import pytest
from click.testing import CliRunner

from host_tools.broker import BrokerSettings, tls_probe, write_config
from host_tools.cli.main import cli
from host_tools.collector import FleetDB
from host_tools.network.config import default_config, save_config
from host_tools.pki import FleetPKI
from host_tools.release.quickstart import ensure_models
from tests.e2e.sim_fixtures import sim_boards
from tests.e2e.test_update_attacks import confirmed
from tests.e2e.test_update_board import PASS, publish

from host_tools.network.lab import World, namespaces_unavailable

_WHY = namespaces_unavailable()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")

BROKER, UPDATES = "192.0.2.10", "192.0.2.20"   # default_config's broker and update server
HEAP = "384k"
PROBE_MQTT = """
import sys
from host_tools.broker import tls_probe
sys.exit(0 if tls_probe(sys.argv[1], 8883, *sys.argv[2:5], timeout=1.0) else 1)
"""
PROBE_HTTPS = """
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
try:
    urllib.request.urlopen(sys.argv[1], timeout=1.0, context=ctx).read()
except OSError:
    sys.exit(1)
"""


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


@pytest.fixture
def lab(tmp_path):
    work = tmp_path / "work"
    ensure_models(work, PASS, ("pump-v2",))
    trees = {"work": work, "tmp": tmp_path / "trees"}
    publish(trees, "pump-v2", "1.1.0", 2, {"agent/release.txt": b"1.1.0\n"})
    pki = FleetPKI(work)
    pki.init(server_hosts=[BROKER])
    pki.issue("pump-a", "pump-v2")
    save_config(work, default_config(["monitor-v1", "pump-v2"]))   # pump-v2: 198.51.100.64/26 (ward-a)
    ruleset = work / "rules.nft"
    r = CliRunner().invoke(cli, ["--workdir", str(work), "network", "policy", "--out", str(ruleset)])
    assert r.exit_code == 0, r.output
    w = World(f"mb{os.getpid() % 100000}")
    try:
        w.build()
        conf, _acl = write_config(pki, BrokerSettings(host=BROKER, port=8883, run_as_root=True,
                                                      log_file=work / "mosquitto.log"), work / "broker")
        w.spawn("core", ["/usr/sbin/mosquitto", "-c", str(conf)], work / "mosquitto.out")
        cli_in = [sys.executable, "-m", "host_tools.cli.main", "--workdir", str(work)]
        w.spawn("core", cli_in + ["repo", "serve", "--tls", "--host", UPDATES, "--port", "8443"],
                work / "serve.out")
        w.spawn("core", cli_in + ["collector", "--host", BROKER, "--port", "8883", "--progress-every", "1"],
                work / "collector.out")
        ident = pki.device_identity("pump-a")
        _wait(lambda: w.run_py("core", PROBE_MQTT, BROKER, str(ident.ca), str(ident.cert), str(ident.key))
              and (work / "tls" / "server.crt").exists()
              and w.run_py("core", PROBE_HTTPS, f"https://{UPDATES}:8443/metadata/1.root.json",
                           str(work / "tls" / "server.crt")),
              30, "broker / repo serve did not start in the core namespace")
        w.load_ruleset(ruleset)
        with sim_boards(work) as boards:
            yield {"work": work, "world": w, "boards": boards, "trees": trees}
    finally:
        w.close()


def _netns_of(pid: int) -> str:
    import subprocess
    return subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True, text=True,
                          timeout=10).stdout.strip()


def _integrity(work, device_id: str) -> str:
    from host_tools.fleet import fleet_status
    devs = {d["device_id"]: d for d in fleet_status(work)["devices"]}
    return devs.get(device_id, {}).get("integrity", "")


def _stored(work, device_id: str) -> int:
    db = FleetDB(work / "fleet.db")
    try:
        return len(db.seqs(device_id))
    finally:
        db.close()


def test_board_streams_and_updates_through_the_router_and_in_quarantine_only_updates(lab):
    work, w, boards = lab["work"], lab["world"], lab["boards"]
    port = boards.start("pump-a", model="pump-v2", heap=HEAP, netns=w.ns("ward-a"))["port"]
    assert _netns_of(boards.supervisor_pid("pump-a")) == w.ns("ward-a")   # its sockets are the ward's
    res = CliRunner().invoke(cli, ["--workdir", str(work), "device", "provision", "pump-a", "--port", port,
                                   "--from-network"])
    assert res.exit_code == 0, res.output
    assert f"broker {BROKER}:8883" in res.output and f"updates: on, https://{UPDATES}:8443" in res.output, res.output

    # 1. In its ward: telemetry through the router to the broker and the collector,
    #    and the signed release from the update server.
    boards.wait_for("pump-a", confirmed("1.1.0"), 150, "1.1.0 confirmed through the router")
    _wait(lambda: _stored(work, "pump-a") >= 3, 60, "pump-a's records stored by the collector in the core")
    # the security monitor is on by default on a 384 KiB board: its posture report
    # (integrity of the slot it scanned) came through the router too
    _wait(lambda: _integrity(work, "pump-a") == "ok", 90, "pump-a's posture report with a clean integrity scan")

    # 2. Moved to the quarantine VLAN: same board, same flash, its port now in quarantine.
    boards.stop("pump-a")
    publish(lab["trees"], "pump-v2", "1.2.0", 3, {"agent/release.txt": b"1.2.0\n"})
    before = w.dropped("other core ports")
    stored_before = _stored(work, "pump-a")
    boards.start("pump-a", netns=w.ns("quar"))
    assert _netns_of(boards.supervisor_pid("pump-a")) == w.ns("quar")
    st = boards.wait_for("pump-a", confirmed("1.2.0"), 150, "1.2.0 confirmed from the quarantine VLAN")
    tel = st["device"]["telemetry"]
    assert not tel.get("connected"), tel                    # never reached the broker
    assert w.dropped("other core ports") > before           # the router dropped its MQTT attempts
    time.sleep(2)
    assert _stored(work, "pump-a") == stored_before         # nothing arrived from quarantine


def test_sim_start_names_a_missing_or_bad_namespace(tmp_path):
    from host_tools.sim.boards import BoardError, Boards

    boards = Boards(tmp_path / "work")
    for bad, why in (("../../etc", "bad network namespace name"), ("ms-no-such-ns", "no network namespace")):
        with pytest.raises(BoardError, match=why):
            boards.start("pump-x", netns=bad)
    assert not boards.names() or not boards.is_running("pump-x")
