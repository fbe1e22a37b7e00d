"""The fleet's Mosquitto broker: generated configuration + ACL, and a process runner."""
from .config import BrokerSettings, render_acl, render_config, write_config
from .runner import Broker, BrokerError, free_port, tls_probe

__all__ = [
    "Broker",
    "BrokerError",
    "BrokerSettings",
    "free_port",
    "render_acl",
    "render_config",
    "tls_probe",
    "write_config",
]
