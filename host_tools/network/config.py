"""The fleet network configuration: segments (VLANs), core services, the hospital LAN.

One file, ``<workdir>/network.json``, feeds both the RADIUS admission answers
(host_tools/nac) and the firewall ruleset (host_tools/network/nftables.py), so
the VLAN a device is put in and what that VLAN may reach cannot disagree::

    {"segments": [{"name": "pump-v2", "vlan": 110, "subnet": "198.51.100.0/26",
                   "models": ["pump-v2"]}, ...],
     "quarantine": {"name": "quarantine", "vlan": 999, "subnet": "198.51.100.192/26"},
     "broker":   {"address": "192.0.2.10", "port": 8883},
     "updates":  {"address": "192.0.2.20", "port": 8443},
     "time":     {"address": "192.0.2.123", "port": 123},      (optional: NTP, udp)
     "collectors": ["192.0.2.30"], "operators": ["192.0.2.40"],
     "hospital_lan": "203.0.113.0/24"}

Without the file, :func:`default_config` gives one segment per model known to the
PKI (sorted; VLAN 110, 120, ...), addresses from the documentation ranges
(RFC 5737). `medsentry network init` writes it so it can be edited and pinned:
VLAN ids must not move when a model is added.
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CONFIG_NAME = "network.json"
QUARANTINE = "quarantine"


class NetworkConfigError(ValueError):
    """network.json is missing a field, or holds a bad address, port or VLAN."""


@dataclass(frozen=True)
class Segment:
    """A VLAN and its subnet; ``models`` are the device models placed in it."""

    name: str
    vlan: int
    subnet: str
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class Service:
    address: str
    port: int


@dataclass(frozen=True)
class NetworkConfig:
    segments: tuple[Segment, ...]
    quarantine: Segment
    broker: Service
    updates: Service
    time: Service | None = None
    collectors: tuple[str, ...] = ()
    operators: tuple[str, ...] = ()
    hospital_lan: str = "203.0.113.0/24"
    extra: dict[str, Any] = field(default_factory=dict)

    def segment_for_model(self, model: str) -> Segment | None:
        for seg in self.segments:
            if model in seg.models:
                return seg
        return None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        if self.time is None:
            d.pop("time")
        return json.loads(json.dumps(d))  # tuples -> lists: the document's own shape


def default_config(models: list[str] | tuple[str, ...]) -> NetworkConfig:
    """One /26 per model from 198.51.100.0/24 (at most three models; the last /26 is
    quarantine), core services in 192.0.2.0/24, hospital LAN 203.0.113.0/24."""
    models = sorted(set(models))
    if len(models) > 3:
        raise NetworkConfigError("more than three models: write network.json with your own subnets")
    subnets = list(ipaddress.ip_network("198.51.100.0/24").subnets(new_prefix=26))
    segs = tuple(Segment(m, 110 + 10 * i, str(subnets[i]), (m,)) for i, m in enumerate(models))
    return NetworkConfig(
        segments=segs,
        quarantine=Segment(QUARANTINE, 999, str(subnets[3])),
        broker=Service("192.0.2.10", 8883),
        updates=Service("192.0.2.20", 8443),
        collectors=("192.0.2.30",),
        operators=("192.0.2.40",),
    )


def _addr(value: Any, what: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise NetworkConfigError(f"{what}: not an IP address: {value!r}") from None


def _net(value: Any, what: str) -> str:
    try:
        return str(ipaddress.ip_network(value))
    except (ValueError, TypeError):
        raise NetworkConfigError(f"{what}: not a network (a.b.c.d/n): {value!r}") from None


def _service(d: Any, what: str) -> Service:
    if not isinstance(d, dict):
        raise NetworkConfigError(f"{what}: expected {{\"address\": ..., \"port\": ...}}")
    port = d.get("port")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise NetworkConfigError(f"{what}.port: not a port number: {port!r}")
    return Service(_addr(d.get("address"), f"{what}.address"), port)


def _segment(d: Any, what: str) -> Segment:
    if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not d["name"]:
        raise NetworkConfigError(f"{what}: expected an object with a name")
    vlan = d.get("vlan")
    if not isinstance(vlan, int) or not 1 < vlan < 4095:
        raise NetworkConfigError(f"{what}.vlan: not a VLAN id (2..4094): {vlan!r}")
    models = d.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise NetworkConfigError(f"{what}.models: expected a list of model names")
    return Segment(d["name"], vlan, _net(d.get("subnet"), f"{what}.subnet"), tuple(models))


def parse_config(d: Any) -> NetworkConfig:
    """Validate a network.json document: distinct VLANs and names, non-overlapping
    subnets, a model in at most one segment."""
    if not isinstance(d, dict):
        raise NetworkConfigError("network.json: expected a JSON object")
    segs = tuple(_segment(s, f"segments[{i}]") for i, s in enumerate(d.get("segments") or []))
    quarantine = _segment(d.get("quarantine"), "quarantine")
    all_segs = segs + (quarantine,)
    for attr in ("vlan", "name"):
        values = [getattr(s, attr) for s in all_segs]
        if len(set(values)) != len(values):
            raise NetworkConfigError(f"segments: duplicate {attr}")
    nets = [ipaddress.ip_network(s.subnet) for s in all_segs]
    for i, a in enumerate(nets):
        for b in nets[i + 1:]:
            if a.overlaps(b):
                raise NetworkConfigError(f"segments: subnets {a} and {b} overlap")
    models = [m for s in segs for m in s.models]
    if len(set(models)) != len(models):
        raise NetworkConfigError("segments: a model is listed in two segments")
    time_d = d.get("time")
    return NetworkConfig(
        segments=segs,
        quarantine=quarantine,
        broker=_service(d.get("broker"), "broker"),
        updates=_service(d.get("updates"), "updates"),
        time=_service(time_d, "time") if time_d is not None else None,
        collectors=tuple(_addr(a, "collectors") for a in d.get("collectors", [])),
        operators=tuple(_addr(a, "operators") for a in d.get("operators", [])),
        hospital_lan=_net(d.get("hospital_lan", "203.0.113.0/24"), "hospital_lan"),
    )


def load_config(workdir: str | Path, models: list[str] | tuple[str, ...] = ()) -> NetworkConfig:
    """``<workdir>/network.json`` if present, else :func:`default_config` for ``models``."""
    path = Path(workdir) / CONFIG_NAME
    if not path.exists():
        return default_config(models)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NetworkConfigError(f"{path}: {exc}") from None
    return parse_config(doc)


def save_config(workdir: str | Path, cfg: NetworkConfig) -> Path:
    path = Path(workdir) / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cfg.to_json(), indent=2) + "\n")
    tmp.replace(path)
    return path
