"""The generated nftables ruleset, applied on a router between network namespaces:
allowed flows work, forbidden ones are dropped (east-west, other core ports, the
hospital LAN, quarantine beyond the update server). Plain TCP endpoints stand in
for Mosquitto / repo serve (see the r3-nac report)."""
from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.network.config import default_config, save_config

from .netns_world import World, namespaces_unavailable

_WHY = namespaces_unavailable()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")

BROKER, UPDATES, COLLECTOR = "192.0.2.10", "192.0.2.20", "192.0.2.30"
WARD_B, LAN = "198.51.100.70", "203.0.113.10"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("seg")
    cfg = default_config(["monitor-v1", "pump-v2"])    # pump-v2: 198.51.100.64/26
    save_config(work, cfg)
    ruleset = work / "rules.nft"
    r = CliRunner().invoke(cli, ["--workdir", str(work), "network", "policy", "--out", str(ruleset)])
    assert r.exit_code == 0, r.output
    w = World(f"ms{os.getpid() % 100000}")
    try:
        w.build()
        w.serve("core", f"{BROKER}:8883", f"{UPDATES}:8443", f"{BROKER}:22", f"{COLLECTOR}:5432")
        w.serve("ward-b", f"{WARD_B}:8883")
        w.serve("ward-a", "198.51.100.66:8883")
        w.serve("lan", f"{LAN}:443")
        # Without the ruleset the router forwards everything: the checks below can fail.
        assert w.connect("ward-a", LAN, 443) and w.connect("ward-a", WARD_B, 8883)
        w.load_ruleset(ruleset)
        yield w
    finally:
        w.close()


def test_device_reaches_broker_and_update_server(world):
    assert world.connect("ward-a", BROKER, 8883)
    assert world.connect("ward-a", UPDATES, 8443)
    assert world.connect("ward-b", BROKER, 8883)


def test_no_east_west_between_devices(world):
    assert not world.connect("ward-a", WARD_B, 8883)
    assert not world.connect("ward-b", "198.51.100.66", 8883)
    assert not world.connect("quar", WARD_B, 8883)


def test_no_other_core_port_and_no_hospital_lan(world):
    assert not world.connect("ward-a", BROKER, 22)
    assert not world.connect("ward-a", COLLECTOR, 5432)
    assert not world.connect("ward-a", LAN, 443)


def test_nobody_opens_connections_to_devices(world):
    assert not world.connect("lan", "198.51.100.66", 8883)
    assert not world.connect("core", "198.51.100.66", 8883)


def test_quarantine_reaches_only_the_update_server(world):
    assert world.connect("quar", UPDATES, 8443)
    assert not world.connect("quar", BROKER, 8883)
    assert not world.connect("quar", LAN, 443)


def test_drops_are_counted_with_reasons(world):
    text = world.ruleset()
    assert "east-west" in text and "devices never reach the hospital LAN" in text
    east_west = [ln for ln in text.splitlines() if "east-west" in ln][0]
    assert "packets 0 " not in east_west, east_west
