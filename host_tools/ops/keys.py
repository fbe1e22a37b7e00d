"""Operator keys and roles: ``medsentry ops keys init|add|revoke|list``.

Work-directory layout::

    ops/operators.json        roles (role -> commands) and operators (name, key id,
                              public key, role, revoked)
    ops/keys/<name>.key       the operator's Ed25519 private key, encrypted like the
                              release keys (host_tools/keyfile.py: scrypt + AES-256-GCM),
                              mode 0600; passphrase MEDSENTRY_KEY_PASSPHRASE_OPS_<NAME>

Devices never see this file: they get the command policy built from it as a
signed TUF target per model (host_tools/ops/policy.py)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from host_tools import keyfile
from host_tools.ops.envelope import COMMANDS, keyid_of, public_hex
from host_tools.release.errors import ReleaseError
from host_tools.release.fsutil import write_atomic
from host_tools.release.keys import check_new_passphrase

DEFAULT_ROLES: dict[str, list[str]] = {
    "admin": ["*"],
    "biomed": ["report-now", "check-update", "set-telemetry-period", "reboot", "unlock-console"],
    "operator": ["report-now", "check-update", "set-telemetry-period"],
    "security": ["report-now", "quarantine"],
}
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class OpsError(ReleaseError):
    """A bad operator-key request (reported as a clean CLI error)."""


@dataclass
class Operator:
    name: str
    keyid: str
    public: str
    role: str
    revoked: bool = False


def key_name(name: str) -> str:
    """Name of an operator key for passphrase variables (``ops-alice``)."""
    return f"ops-{name}"


class OpsKeyring:
    def __init__(self, workdir: str | Path) -> None:
        self.dir = Path(workdir) / "ops"
        self.file = self.dir / "operators.json"

    # -- storage -------------------------------------------------------------
    def exists(self) -> bool:
        return self.file.exists()

    def _load(self) -> dict[str, Any]:
        if not self.exists():
            raise OpsError("no operator keys here: run `medsentry ops keys init` first")
        try:
            doc = json.loads(self.file.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise OpsError(f"{self.file} is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("operators"), dict):
            raise OpsError(f"{self.file} is not an operator list")
        return doc

    def _save(self, doc: dict[str, Any]) -> None:
        write_atomic(self.file, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(), 0o600)

    def roles(self) -> dict[str, list[str]]:
        return self._load()["roles"]

    def may(self, op: Operator, command: str) -> bool:
        """Whether the role of operator ``op`` may run ``command`` (the devices
        decide the same from the command policy: agent/security/commands.py)."""
        allowed = self.roles().get(op.role, [])
        return command in allowed or "*" in allowed

    def operators(self) -> list[Operator]:
        return [Operator(**v) for v in self._load()["operators"].values()]

    def get(self, name: str) -> Operator:
        ops = self._load()["operators"]
        if name not in ops:
            raise OpsError(f"no operator {name!r}")
        return Operator(**ops[name])

    # -- commands ------------------------------------------------------------
    def init(self) -> None:
        if self.exists():
            raise OpsError(f"operator keys already initialised in {self.dir}")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.dir / "keys").mkdir(exist_ok=True, mode=0o700)
        self._save({"roles": DEFAULT_ROLES, "operators": {}, "version": 1})

    def add(self, name: str, role: str, passphrase: str) -> Operator:
        if not NAME_RE.match(name):
            raise OpsError(f"operator name {name!r}: lowercase letters, digits, - and _ (max 32)")
        doc = self._load()
        if role not in doc["roles"]:
            raise OpsError(f"unknown role {role!r} (one of {', '.join(sorted(doc['roles']))})")
        if name in doc["operators"]:
            raise OpsError(f"operator {name!r} exists (revoke it and add a new name to rotate)")
        check_new_passphrase(key_name(name), passphrase)
        key = Ed25519PrivateKey.generate()
        pub = public_hex(key.public_key())
        op = Operator(name, keyid_of(pub), pub, role)
        write_atomic(self.key_path(name), keyfile.encrypt(key, passphrase), 0o600)
        doc["operators"][name] = op.__dict__
        doc["version"] = int(doc.get("version", 1)) + 1
        self._save(doc)
        return op

    def revoke(self, name: str) -> Operator:
        doc = self._load()
        if name not in doc["operators"]:
            raise OpsError(f"no operator {name!r}")
        doc["operators"][name]["revoked"] = True
        doc["version"] = int(doc.get("version", 1)) + 1
        self._save(doc)
        return Operator(**doc["operators"][name])

    def key_path(self, name: str) -> Path:
        return self.dir / "keys" / f"{name}.key"

    def private_key(self, name: str, passphrase: str) -> Ed25519PrivateKey:
        op = self.get(name)
        if op.revoked:
            raise OpsError(f"operator {name!r} is revoked")
        try:
            data = self.key_path(name).read_bytes()
        except OSError as exc:
            raise OpsError(f"cannot read the key of {name!r}: {exc.strerror}") from None
        try:
            key = keyfile.load(data, passphrase).key
        except keyfile.BadPassphrase:
            raise OpsError(f"wrong passphrase for operator {name!r}") from None
        except keyfile.KeyFileFormatError as exc:
            raise OpsError(f"key file of {name!r}: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey) or public_hex(key.public_key()) != op.public:
            raise OpsError(f"key file of {name!r} does not hold its registered key")
        return key

    def policy(self, model: str) -> dict[str, Any]:
        """The command policy for `model` (what devices verify commands against)."""
        doc = self._load()
        keys, revoked = {}, []
        for op in self.operators():
            if op.revoked:
                revoked.append(op.keyid)
            else:
                keys[op.keyid] = {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": op.public},
                                  "role": op.role, "name": op.name}
        roles = {r: [c for c in cmds if c == "*" or c in COMMANDS] for r, cmds in doc["roles"].items()}
        return {"type": "command-policy", "model": model, "version": int(doc.get("version", 1)),
                "keys": keys, "revoked": sorted(revoked), "roles": roles, "max_validity_s": 600}
