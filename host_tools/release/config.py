"""Release configuration stored in ``<workdir>/release-config.json``."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from .durations import parse_duration
from .errors import ConfigError
from .fsutil import write_atomic
from .inputs import read_regular

KEY_TYPES = ("ed25519", "ecdsa")
#: roles with a configurable expiry; "models" covers every delegated model role
EXPIRY_ROLES = ("root", "targets", "models", "snapshot", "timestamp")
DEFAULT_EXPIRY = {
    "root": "1y",
    "targets": "90d",
    "models": "90d",
    "snapshot": "7d",
    "timestamp": "1d",
}
#: Application slot of a model whose size is not configured: the slot of the
#: simulated board's default 2 MiB flash (board/sim/flash.py default_layout,
#: a quarter of the flash; tests/host/test_release_inputs.py checks they agree).
DEFAULT_SLOT_SIZE = 512 * 1024


@dataclass
class ReleaseConfig:
    key_type: str = "ed25519"
    root_keys: int = 3
    root_threshold: int = 2
    expiry: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_EXPIRY))
    #: model -> bytes of its application slot (the board's partition table)
    slot_size: dict[str, int] = field(default_factory=dict)

    def validate(self) -> "ReleaseConfig":
        if self.key_type not in KEY_TYPES:
            raise ConfigError(f"unknown key type {self.key_type!r}: use one of {', '.join(KEY_TYPES)}")
        if not 1 <= self.root_threshold <= self.root_keys <= 16:
            raise ConfigError(
                f"root threshold {self.root_threshold} of {self.root_keys} keys is not valid "
                "(need 1 <= threshold <= keys <= 16)"
            )
        for role, text in self.expiry.items():
            if role not in EXPIRY_ROLES:
                raise ConfigError(f"unknown role for an expiry: {role!r} (one of {', '.join(EXPIRY_ROLES)})")
            parse_duration(text)
        for model, size in self.slot_size.items():
            if not isinstance(size, int) or isinstance(size, bool) or not 4096 <= size <= 1 << 32:
                raise ConfigError(f"slot size of {model} must be a number of bytes from 4096 to 4 GiB: {size!r}")
        return self

    def slot_bytes(self, model: str) -> int:
        """Bytes of `model`'s application slot (every package must fit it)."""
        return self.slot_size.get(model, DEFAULT_SLOT_SIZE)

    def expiry_for(self, role: str) -> timedelta:
        """Expiry period for a TUF role name (delegated model roles use 'models')."""
        key = role if role in ("root", "targets", "snapshot", "timestamp") else "models"
        return parse_duration(self.expiry.get(key, DEFAULT_EXPIRY[key]))

    def to_json(self) -> bytes:
        doc = {
            "key_type": self.key_type,
            "root_keys": self.root_keys,
            "root_threshold": self.root_threshold,
            "expiry": dict(sorted(self.expiry.items())),
        }
        if self.slot_size:
            doc["slot_size"] = dict(sorted(self.slot_size.items()))
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    def save(self, path: Path) -> None:
        write_atomic(path, self.validate().to_json())

    @classmethod
    def load(cls, path: Path) -> "ReleaseConfig":
        if not path.exists():
            return cls()
        try:
            doc = json.loads(read_regular(path, 1024 * 1024, "release configuration"))
            expiry = dict(DEFAULT_EXPIRY)
            expiry.update(doc.get("expiry", {}))
            return cls(
                key_type=doc.get("key_type", "ed25519"),
                root_keys=int(doc.get("root_keys", 3)),
                root_threshold=int(doc.get("root_threshold", 2)),
                expiry=expiry,
                slot_size=dict(doc.get("slot_size", {})),
            ).validate()
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path}: not a valid release configuration: {exc}") from None
