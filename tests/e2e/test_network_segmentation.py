"""The generated nftables ruleset, applied on a router between network namespaces:
allowed flows work, forbidden ones are dropped (east-west, other core ports, the
hospital LAN, quarantine beyond the update server). The core runs a real Mosquitto
(mutual TLS with the device's fleet certificate) and a real `medsentry repo serve`;
other endpoints are plain TCP listeners. Simulated boards do not run inside the
namespaces yet (see the r3-nac report)."""
from __future__ import annotations

import os
import sys
import time

import pytest
from click.testing import CliRunner

from host_tools.broker import BrokerSettings, write_config
from host_tools.cli.main import cli
from host_tools.network.config import default_config, save_config
from host_tools.pki import FleetPKI

from host_tools.network.lab import World, namespaces_unavailable

_WHY = namespaces_unavailable()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")

BROKER, UPDATES, COLLECTOR = "192.0.2.10", "192.0.2.20", "192.0.2.30"
WARD_B, LAN = "198.51.100.70", "203.0.113.10"

MQTT_TLS = """
import sys
from host_tools.broker import tls_probe
sys.exit(0 if tls_probe(sys.argv[1], 8883, *sys.argv[2:5], timeout=1.0) else 1)
"""
HTTP_GET = """
import sys, urllib.request
try:
    body = urllib.request.urlopen(sys.argv[1], timeout=1.0).read()
except OSError:
    sys.exit(1)
sys.exit(0 if body == b"root-v1" else 2)
"""


def _mqtt(world, ns, pki, dev):
    ident = pki.device_identity(dev)
    return world.run_py(ns, MQTT_TLS, BROKER, str(ident.ca), str(ident.cert), str(ident.key))


def _updates(world, ns):
    return world.run_py(ns, HTTP_GET, f"http://{UPDATES}:8443/metadata/1.root.json")


def _start_core(w, work, pki):
    conf, _acl = write_config(pki, BrokerSettings(host=BROKER, port=8883, run_as_root=True,
                                                  log_file=work / "mosquitto.log"), work / "broker")
    w.spawn("core", ["/usr/sbin/mosquitto", "-c", str(conf)], work / "mosquitto.out")
    meta = work / "repository" / "metadata"
    meta.mkdir(parents=True)
    (meta / "1.root.json").write_bytes(b"root-v1")
    w.spawn("core", [sys.executable, "-m", "host_tools.cli.main", "--workdir", str(work), "repo",
                     "serve", "--host", UPDATES, "--port", "8443"], work / "serve.out")
    deadline = time.monotonic() + 20
    while not (_mqtt(w, "core", pki, "pump-1") and _updates(w, "core")):
        assert time.monotonic() < deadline, "broker / repo serve did not start in the core namespace"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("seg")
    pki = FleetPKI(work)
    pki.init(server_hosts=[BROKER])
    for dev in ("pump-1", "pump-q"):
        pki.issue(dev, "pump-v2")
    cfg = default_config(["monitor-v1", "pump-v2"])    # pump-v2: 198.51.100.64/26
    save_config(work, cfg)
    ruleset = work / "rules.nft"
    r = CliRunner().invoke(cli, ["--workdir", str(work), "network", "policy", "--out", str(ruleset)])
    assert r.exit_code == 0, r.output
    w = World(f"ms{os.getpid() % 100000}")
    try:
        w.build()
        _start_core(w, work, pki)
        w.serve("core", f"{BROKER}:22", f"{COLLECTOR}:5432")
        w.serve("ward-b", f"{WARD_B}:8883")
        w.serve("ward-a", "198.51.100.66:8883")
        w.serve("lan", f"{LAN}:443")
        # Without the ruleset the router forwards everything: the checks below can fail.
        assert w.connect("ward-a", LAN, 443) and w.connect("ward-a", WARD_B, 8883)
        assert _mqtt(w, "quar", pki, "pump-q") and w.connect("ward-a", BROKER, 22)
        w.load_ruleset(ruleset)
        yield w, pki
    finally:
        w.close()


@pytest.fixture
def net(world):
    return world[0]


def test_device_reaches_broker_and_update_server(world):
    w, pki = world
    assert _mqtt(w, "ward-a", pki, "pump-1")        # mutual TLS with Mosquitto
    assert _updates(w, "ward-a")                     # repo serve
    assert _mqtt(w, "ward-b", pki, "pump-1") and _updates(w, "ward-b")


def test_no_east_west_between_devices(net):
    assert not net.connect("ward-a", WARD_B, 8883)
    assert not net.connect("ward-b", "198.51.100.66", 8883)
    assert not net.connect("quar", WARD_B, 8883)


def test_no_other_core_port_and_no_hospital_lan(net):
    assert not net.connect("ward-a", BROKER, 22)
    assert not net.connect("ward-a", COLLECTOR, 5432)
    assert not net.connect("ward-a", LAN, 443)


def test_nobody_opens_connections_to_devices(net):
    assert not net.connect("lan", "198.51.100.66", 8883)
    assert not net.connect("core", "198.51.100.66", 8883)


def test_quarantine_reaches_only_the_update_server(world):
    w, pki = world
    assert _updates(w, "quar")
    assert not _mqtt(w, "quar", pki, "pump-q")
    assert not w.connect("quar", LAN, 443)


def test_drops_are_counted_with_reasons(net):
    text = net.ruleset()
    assert "east-west" in text and "devices never reach the hospital LAN" in text
    east_west = [ln for ln in text.splitlines() if "east-west" in ln][0]
    assert "packets 0 " not in east_west, east_west
