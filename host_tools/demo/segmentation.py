"""Demo: the quarantined device's traffic limited by the generated firewall.

After RADIUS placed the board with the integrity alert in the quarantine VLAN
(host_tools/demo/network.py), this builds the namespace lab of
host_tools/network/lab.py (a router between a ward port, the quarantine VLAN, the
core and the hospital LAN), loads the nftables ruleset `medsentry network policy`
generates from the same network.json, and opens, from a healthy pump's port and
from the quarantined device's port, every connection a device could try: broker,
update server, another device, another core port, the hospital LAN. The router
decides; its drop counters give ``blocked_flows``. The flows are TCP connections
to plain listeners at the real addresses (the firewall decides on addresses and
ports; the boards' own traffic through such a router is tests/e2e/test_network_boards.py).
Where namespaces cannot be made (no root, no nft) the stage says why and goes on.
"""
from __future__ import annotations

import ipaddress
import os

from rich.table import Table

from host_tools.demo.context import DemoContext
from host_tools.network.config import NetworkConfig
from host_tools.network.lab import World, namespaces_unavailable
from host_tools.network.nftables import render_nftables

OTHER_DEVICE = "198.51.100.70"   # the lab's second ward port
LAN = "203.0.113.10"


def _flows(cfg: NetworkConfig) -> list[tuple[str, str, int]]:
    return [("broker (MQTT/TLS)", cfg.broker.address, cfg.broker.port),
            ("update server (HTTPS)", cfg.updates.address, cfg.updates.port),
            ("another device", OTHER_DEVICE, 8883),
            ("core, other port (ssh)", cfg.broker.address, 22),
            ("hospital LAN", LAN, 443)]


def traffic(ctx: DemoContext, cfg: NetworkConfig, healthy: str | None, quarantined: str | None) -> dict:
    """Run the flows; the summary's segmentation part (or why it was skipped)."""
    why = namespaces_unavailable()
    lab_ward = World.PORTS["ward-a"][0].split("/")[0]
    seg = next((s for s in cfg.segments if ipaddress.ip_address(lab_ward) in ipaddress.ip_network(s.subnet)), None)
    if why is None and (cfg.broker.address, cfg.updates.address) != ("192.0.2.10", "192.0.2.20"):
        why = "network.json has its own addresses; the lab uses the default plan's"
    if why is None and quarantined is None:
        why = "no device was quarantined"
    if why:
        ctx.console.print(f"[yellow]segmentation lab skipped:[/] {why}")
        return {"blocked_flows": None, "segmentation_skipped": why}
    rules = ctx.workdir / "network" / "rules.nft"
    rules.parent.mkdir(parents=True, exist_ok=True)
    rules.write_text(render_nftables(cfg))
    w = World(f"msdemo{os.getpid() % 100000}")
    try:
        w.build()
        w.serve("core", *{f"{a}:{p}" for _, a, p in _flows(cfg) if a.startswith("192.0.2.")})
        w.serve("ward-b", f"{OTHER_DEVICE}:8883")
        w.serve("lan", f"{LAN}:443")
        w.load_ruleset(rules)
        ports = {"quar": quarantined}
        if healthy is not None and seg is not None:
            ports = {"ward-a": healthy, **ports}
        rows, blocked = [], 0
        for what, addr, port in _flows(cfg):
            row = {"flow": what, "to": f"{addr}:{port}"}
            for ns, device in ports.items():
                ok = w.connect(ns, addr, port)
                row[device] = "allowed" if ok else "blocked"
                blocked += not ok
            rows.append(row)
        dropped = w.dropped()
    finally:
        w.close()
    want = {"broker (MQTT/TLS)": "blocked", "update server (HTTPS)": "allowed"}
    for r in rows:
        if r[quarantined] != want.get(r["flow"], "blocked"):
            raise RuntimeError(f"demo: the firewall let quarantined {quarantined} {r[quarantined]} to {r['flow']}")
        if healthy in r and r[healthy] != ("allowed" if r["flow"] in want else "blocked"):
            raise RuntimeError(f"demo: the firewall {r[healthy]} {healthy} to {r['flow']}")
    t = Table(title=f"medsentry demo: traffic through the generated nftables ruleset ({rules.name})")
    t.add_column("flow")
    t.add_column("to")
    for device, ns in ((d, n) for n, d in ports.items()):
        t.add_column(f"{device} ({'quarantine VLAN' if ns == 'quar' else 'VLAN ' + str(seg.vlan if seg else '?')})")
    for r in rows:
        t.add_row(r["flow"], r["to"], *(r[d] for d in ports.values()))
    ctx.console.print(t)
    return {"blocked_flows": blocked, "dropped_packets": dropped, "flows": rows, "ruleset": str(rules)}
