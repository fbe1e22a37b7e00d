"""Fleet PKI: CA, broker and client certificates, device identities, telemetry keys, CRL."""
from .authority import (
    CLIENT_ROLES,
    DEFAULT_DEVICE_DAYS,
    DEFAULT_SERVER_HOSTS,
    FleetPKI,
    Identity,
)
from .errors import NotInitialized, PkiError, UnknownDevice
from .records import DeviceRecord, TelemetryKey, check_device_id

__all__ = [
    "CLIENT_ROLES",
    "DEFAULT_DEVICE_DAYS",
    "DEFAULT_SERVER_HOSTS",
    "DeviceRecord",
    "FleetPKI",
    "Identity",
    "NotInitialized",
    "PkiError",
    "TelemetryKey",
    "UnknownDevice",
    "check_device_id",
]
