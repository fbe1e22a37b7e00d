"""Release configuration stored in ``<workdir>/release-config.json``."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from .durations import parse_duration
from .errors import ConfigError
from .fsutil import write_atomic

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


@dataclass
class ReleaseConfig:
    key_type: str = "ed25519"
    root_keys: int = 3
    root_threshold: int = 2
    expiry: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_EXPIRY))

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
        return self

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
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    def save(self, path: Path) -> None:
        write_atomic(path, self.validate().to_json())

    @classmethod
    def load(cls, path: Path) -> "ReleaseConfig":
        if not path.exists():
            return cls()
        try:
            doc = json.loads(path.read_text())
            expiry = dict(DEFAULT_EXPIRY)
            expiry.update(doc.get("expiry", {}))
            return cls(
                key_type=doc.get("key_type", "ed25519"),
                root_keys=int(doc.get("root_keys", 3)),
                root_threshold=int(doc.get("root_threshold", 2)),
                expiry=expiry,
            ).validate()
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path}: not a valid release configuration: {exc}") from None
