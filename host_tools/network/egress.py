"""The device side of the segmentation policy, from the same network config.

A board's egress allow-list (board/netguard.py, armed by agent/security/flags.py)
is the broker address in its identity plus the endpoints of its update URLs, plus
any ``egress.allow`` extras in its config. :func:`device_services` gives those
from :class:`NetworkConfig`, the same object ``render_nftables`` reads, so a board
provisioned with them asks for exactly what the firewall lets its segment reach.

Documented differences (tests/host/test_network_egress_agree.py checks the rest):

- time service: the firewall lets segments reach it (UDP); the board's guard covers
  only the agent's own TCP connections (MQTT, HTTPS), so it is not in the list.
- quarantine: the firewall lets the quarantine segment reach only the update server;
  the board's own quarantine narrowing keeps broker and update server (its core).
"""
from __future__ import annotations

from pathlib import Path

from host_tools.network.config import CONFIG_NAME, NetworkConfig, NetworkConfigError, load_config


def update_url(cfg: NetworkConfig) -> str:
    """The update server's base URL as a board is provisioned with it (HTTPS)."""
    u = cfg.updates
    return f"https://{u.address}:{u.port}"


def device_services(cfg: NetworkConfig) -> tuple[tuple[str, int], str]:
    """``((broker_host, broker_port), update_base_url)`` for provisioning a board."""
    return (cfg.broker.address, cfg.broker.port), update_url(cfg)


def services_from_workdir(workdir: str | Path) -> tuple[tuple[str, int], str]:
    """:func:`device_services` of ``<workdir>/network.json`` (`network init`); it must exist:
    a default config's documentation-range addresses are never written to a board."""
    if not (Path(workdir) / CONFIG_NAME).exists():
        raise NetworkConfigError(f"no {Path(workdir) / CONFIG_NAME}: run `medsentry network init` first")
    return device_services(load_config(workdir))
