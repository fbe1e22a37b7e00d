"""Device records: identity metadata plus the per-device telemetry keys.

A device record lives at ``<workdir>/pki/devices/<id>.json`` (mode 0600, it holds
secret keys) next to ``<id>.key`` (0600) and ``<id>.crt``. JSON shape::

    {
      "device_id": "pump-0001",
      "model": "pump-v2",
      "serial": "5f3a...",              # certificate serial, hex
      "not_before": "2026-11-30T07:00:00+00:00",
      "not_after": "2028-11-30T07:00:00+00:00",
      "cert": "pump-0001.crt",          # relative to the devices/ directory
      "key": "pump-0001.key",
      "revoked": null,                  # or ISO time of revocation
      "telemetry_keys": [
        {"kid": "hex 8 bytes", "key": "hex 16 bytes", "base_iv": "hex 13 bytes",
         "alg": 10, "created": "ISO", "retired": null}
      ]
    }

The newest non-retired telemetry key is the one the device seals with; the
collector accepts every non-retired one (see host_tools/collector/SEALING.md).
"""
from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import PkiError

COSE_ALG_AES_CCM_16_64_128 = 10
KID_LEN = 8
KEY_LEN = 16
BASE_IV_LEN = 13

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MODEL_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Names the broker ACL gives other roles; a device may not take them, nor
# "<role>-<instance>" (one certificate per collector instance: collector-b, ...).
RESERVED_IDS = frozenset({"collector", "operator", "broker", "ca", "fleet"})
SERVICE_ROLES = ("collector", "operator")
SERVICE_NAME_RE = re.compile(r"^(collector|operator)(-[a-z0-9_]{1,32})?$")


def is_reserved_id(name: str) -> bool:
    """A fleet role name or a role instance name (``collector-b``), any case."""
    low = name.lower()
    return low in RESERVED_IDS or any(low.startswith(r + "-") for r in SERVICE_ROLES)


def service_role(name: str) -> str | None:
    """``collector``/``operator`` for a service identity name (``collector-b`` too), else None."""
    m = SERVICE_NAME_RE.match(name)
    return m.group(1) if m else None


def check_device_id(device_id: str) -> str:
    """Return ``device_id`` if it is a valid, non-reserved device id, else raise."""
    if not DEVICE_ID_RE.match(device_id) or device_id in (".", ".."):
        raise PkiError(
            f"invalid device id {device_id!r}: use 1-64 characters from A-Z a-z 0-9 . _ -"
        )
    if is_reserved_id(device_id):
        raise PkiError(f"device id {device_id!r} is reserved for a fleet role")
    return device_id


def check_model(model: str) -> str:
    if not MODEL_RE.match(model):
        raise PkiError(f"invalid model {model!r}: use 1-64 characters from A-Z a-z 0-9 . _ -")
    return model


def now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(timezone.utc).isoformat()


@dataclass
class TelemetryKey:
    """One AES-CCM-16-64-128 telemetry key with its key id and COSE context IV."""

    kid: bytes
    key: bytes
    base_iv: bytes
    created: str
    retired: str | None = None
    alg: int = COSE_ALG_AES_CCM_16_64_128

    @classmethod
    def generate(cls, taken_kids: set[bytes] | None = None) -> "TelemetryKey":
        taken = taken_kids or set()
        while True:
            kid = secrets.token_bytes(KID_LEN)
            if kid not in taken:
                break
        return cls(
            kid=kid,
            key=secrets.token_bytes(KEY_LEN),
            base_iv=secrets.token_bytes(BASE_IV_LEN),
            created=iso(now_utc()) or "",
        )

    @property
    def active(self) -> bool:
        return self.retired is None

    def to_json(self) -> dict[str, Any]:
        return {
            "kid": self.kid.hex(),
            "key": self.key.hex(),
            "base_iv": self.base_iv.hex(),
            "alg": self.alg,
            "created": self.created,
            "retired": self.retired,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TelemetryKey":
        try:
            tk = cls(
                kid=bytes.fromhex(d["kid"]),
                key=bytes.fromhex(d["key"]),
                base_iv=bytes.fromhex(d["base_iv"]),
                created=d.get("created") or "",
                retired=d.get("retired"),
                alg=int(d.get("alg", COSE_ALG_AES_CCM_16_64_128)),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise PkiError(f"bad telemetry key entry: {exc}") from None
        if len(tk.key) != KEY_LEN or len(tk.base_iv) != BASE_IV_LEN or not tk.kid:
            raise PkiError("bad telemetry key entry: wrong key, base_iv or kid length")
        if tk.alg != COSE_ALG_AES_CCM_16_64_128:
            raise PkiError(f"unsupported telemetry key alg {tk.alg}")
        return tk


@dataclass
class DeviceRecord:
    """Everything the fleet knows about one device identity."""

    device_id: str
    model: str
    serial: str
    not_before: str
    not_after: str
    cert: str
    key: str
    revoked: str | None = None
    telemetry_keys: list[TelemetryKey] = field(default_factory=list)

    def active_key(self) -> TelemetryKey:
        """The newest non-retired telemetry key (the one the device seals with)."""
        for tk in reversed(self.telemetry_keys):
            if tk.active:
                return tk
        raise PkiError(f"device {self.device_id} has no active telemetry key")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["telemetry_keys"] = [tk.to_json() for tk in self.telemetry_keys]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "DeviceRecord":
        try:
            keys = [TelemetryKey.from_json(k) for k in d.get("telemetry_keys", [])]
            return cls(
                device_id=d["device_id"],
                model=d["model"],
                serial=d["serial"],
                not_before=d["not_before"],
                not_after=d["not_after"],
                cert=d["cert"],
                key=d["key"],
                revoked=d.get("revoked"),
                telemetry_keys=keys,
            )
        except KeyError as exc:
            raise PkiError(f"device record misses field {exc}") from None


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` atomically to ``path`` with mode 0600 from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    """Write ``data`` atomically to ``path`` with mode 0644."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def save_record(path: Path, record: DeviceRecord) -> None:
    write_private(path, (json.dumps(record.to_json(), indent=2) + "\n").encode())


def load_record(path: Path) -> DeviceRecord:
    try:
        return DeviceRecord.from_json(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise PkiError(f"cannot read device record {path}: {exc}") from None
