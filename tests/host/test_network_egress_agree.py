"""Issue 17 §2 last bullet: the board's egress allow-list and the generated firewall
policy come from the same network config and agree.

Device side: the real provisioning code (build_bundle for the identity's broker,
update_settings for the update URLs) fed from host_tools/network/egress.py, then the
real agent code (agent/security/flags.core_endpoints) and board/netguard arm it.
Firewall side: the accept rules of the ruleset render_nftables generates, parsed.
"""
from __future__ import annotations

import dataclasses
import re

import pytest

from agent.security import flags
from board import netguard
from host_tools.network.config import NetworkConfig, Service, default_config
from host_tools.network.egress import device_services
from host_tools.network.nftables import render_nftables
from host_tools.pki import FleetPKI
from host_tools.provision.bundle import BrokerAddress, build_bundle
from host_tools.provision.updates import update_settings

RULE = re.compile(r"ip saddr (\S+) ip daddr (\S+) (tcp|udp) dport (\d+) .*accept")
MODELS = ("pump-v2", "monitor-v1")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = FleetPKI(tmp_path_factory.mktemp("egress"))
    p.init()
    p.issue("pump-1", "pump-v2")
    p.issue("mon-1", "monitor-v1")
    return p


def firewall_tcp(cfg: NetworkConfig) -> dict[str, set[str]]:
    """segment name -> {"addr:port"} of the TCP flows the ruleset accepts from it."""
    seg_of = {s.subnet: s.name for s in (*cfg.segments, cfg.quarantine)}
    out: dict[str, set[str]] = {}
    for src, dst, proto, port in RULE.findall(render_nftables(cfg)):
        if src in seg_of and proto == "tcp":
            out.setdefault(seg_of[src], set()).add(f"{dst}:{port}")
    return out


def device_egress(pki: FleetPKI, device_id: str, cfg: NetworkConfig) -> set[str]:
    """What the board's guard allows once armed from a bundle provisioned with `cfg`."""
    (host, port), url = device_services(cfg)
    ident = build_bundle(pki, device_id, BrokerAddress(host, port)).identity["broker"]
    conf = update_settings(pki.workdir, url, None).config
    netguard.arm(flags.core_endpoints(ident, conf))
    try:
        return set(netguard.allowed())
    finally:
        netguard.arm([])


def disagreements(pki: FleetPKI, fw_cfg: NetworkConfig, dev_cfg: NetworkConfig) -> list[str]:
    fw = firewall_tcp(fw_cfg)
    out = []
    for rec in pki.devices():
        seg = fw_cfg.segment_for_model(rec.model)
        assert seg is not None
        eg, ok = device_egress(pki, rec.device_id, dev_cfg), fw.get(seg.name, set())
        if eg - ok:
            out.append(f"{rec.device_id}: egress allows {sorted(eg - ok)} the firewall drops")
        if ok - eg:
            out.append(f"{rec.device_id}: firewall accepts {sorted(ok - eg)} not in its egress list")
        # quarantine: the firewall keeps only the update server, which the board keeps too
        if not fw.get(fw_cfg.quarantine.name, set()) <= eg:
            out.append(f"{rec.device_id}: quarantine flows not in its egress list")
    return out


def test_egress_and_firewall_agree(pki):
    cfg = default_config(MODELS)
    assert disagreements(pki, cfg, cfg) == []
    # with a time service the firewall adds only UDP (documented difference), still agreeing
    timed = dataclasses.replace(cfg, time=Service("192.0.2.50", 123))
    assert disagreements(pki, timed, timed) == []


def test_one_side_changed_is_caught(pki):
    cfg = default_config(MODELS)
    moved = dataclasses.replace(cfg, updates=Service(cfg.updates.address, 9443))
    # the firewall regenerated, the boards provisioned from the old config: caught both ways
    msgs = disagreements(pki, moved, cfg)
    assert any("the firewall drops" in m and ":8443" in m for m in msgs)
    assert any("not in its egress list" in m and ":9443" in m for m in msgs)
    # the boards moved to another broker, the firewall not
    other = dataclasses.replace(cfg, broker=Service("192.0.2.11", cfg.broker.port))
    assert any("192.0.2.11" in m for m in disagreements(pki, cfg, other))


def test_provision_from_network_json(pki):
    """`device provision --from-network` reads the same network.json the policy is made from."""
    from click.testing import CliRunner

    from host_tools.cli.main import cli
    from host_tools.network.config import CONFIG_NAME, save_config
    from host_tools.network.egress import services_from_workdir

    wd = pki.workdir
    (wd / CONFIG_NAME).unlink(missing_ok=True)
    r = CliRunner().invoke(cli, ["--workdir", str(wd), "device", "provision", "pump-1", "--port", "/nonexistent",
                                 "--from-network"])
    assert r.exit_code == 1 and "network init" in r.output and "Traceback" not in r.output
    cfg = dataclasses.replace(default_config(MODELS), broker=Service("192.0.2.12", 8884))
    save_config(wd, cfg)
    assert services_from_workdir(wd) == device_services(cfg) == (("192.0.2.12", 8884), "https://192.0.2.20:8443")
    r = CliRunner().invoke(cli, ["--workdir", str(wd), "device", "provision", "pump-1", "--port", "/nonexistent",
                                 "--from-network", "--broker-port", "1883"])
    assert r.exit_code == 2 and "--from-network" in r.output
    (wd / CONFIG_NAME).unlink()
