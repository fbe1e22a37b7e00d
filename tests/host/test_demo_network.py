"""The demo's network stage on a real FreeRADIUS and real eapol_test: the
summary's counts come from real RADIUS answers that agree with the fleet policy."""
from __future__ import annotations

import io
import shutil

import pytest
from rich.console import Console

from host_tools.demo.context import DEMO_BOARDS, DemoContext
from host_tools.demo.network import STOLEN, stage_network
from host_tools.network.lab import namespaces_unavailable
from host_tools.nac.policy import set_quarantine
from host_tools.pki import FleetPKI
from host_tools.sim.boards import Boards

pytestmark = pytest.mark.skipif(
    not (shutil.which("freeradius") or shutil.which("/usr/sbin/freeradius")) or not shutil.which("eapol_test"),
    reason="freeradius / eapoltest not installed (make setup installs them)")


def test_demo_network_stage_admits_quarantines_and_refuses(tmp_path):
    work = tmp_path / "work"
    pki = FleetPKI(work)
    pki.init()
    for name, model in DEMO_BOARDS.items():
        pki.issue(name, model)
    # The finding the security stage leaves on one board (here: an operator's quarantine).
    set_quarantine(work / "fleet.db", "pump-2", "integrity alert")
    out = io.StringIO()
    ctx = DemoContext(out=tmp_path, workdir=work, boards=Boards(work), names=list(DEMO_BOARDS),
                      console=Console(file=out, width=160))
    ctx.shared["telemetry"] = {"pki": pki}
    stage_network(ctx)
    net = ctx.summary["network"]
    assert (net["admitted"], net["quarantined"], net["refused"]) == (2, 1, 1), net
    by = {d["device"]: d for d in net["decisions"]}
    assert by["pump-1"]["vlan"] == 120 and by["monitor-1"]["vlan"] == 110
    assert by["pump-2"]["vlan"] == 999 and "integrity alert" in " ".join(by["pump-2"]["why"])
    assert by[STOLEN]["answer"] == "reject" and "revoked" in " ".join(by[STOLEN]["why"])
    assert "802.1X admission" in out.getvalue()
    why = namespaces_unavailable()
    if why is not None:
        assert net["blocked_flows"] is None and net["segmentation_skipped"] == why
        return
    # the quarantined pump-2 reaches only the update server; the healthy pump-1
    # the broker and the update server; the router dropped the rest
    flows = {f["flow"]: f for f in net["flows"]}
    assert [f for f, r in flows.items() if r["pump-2"] == "allowed"] == ["update server (HTTPS)"]
    assert sorted(f for f, r in flows.items() if r["pump-1"] == "allowed") == ["broker (MQTT/TLS)",
                                                                            "update server (HTTPS)"]
    assert net["blocked_flows"] == 7 and net["dropped_packets"] >= 7, net
    assert "traffic through the generated nftables ruleset" in out.getvalue()
