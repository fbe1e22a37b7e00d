"""Command envelopes as the device verifies them (agent/security/commands.py).

The signature covers the payload string's UTF-8 bytes exactly as sent; the
payload is compact JSON with sorted keys."""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from host_tools.console.store import NAME_RE, ROLES

COMMANDS = ("report-now", "check-update", "set-telemetry-period", "quarantine", "reboot", "unlock-console",
            "console-user")
MAX_VALIDITY_S = 600
MAX_ENVELOPE = 1024


class CommandInputError(ValueError):
    """A command or its arguments that the device would refuse anyway."""


def public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def keyid_of(public: str) -> str:
    """Key id: sha256 of the raw public key (hex)."""
    return hashlib.sha256(bytes.fromhex(public)).hexdigest()


def tuf_key(public: str) -> dict[str, Any]:
    return {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": public}}


def parse_args(command: str, args: list[str]) -> list[Any]:
    """Typed arguments for `command`, refused as the device would refuse them."""
    if command not in COMMANDS:
        raise CommandInputError(f"unknown command {command!r} (one of {', '.join(COMMANDS)})")
    if command in ("report-now", "check-update", "reboot"):
        if args:
            raise CommandInputError(f"{command} takes no arguments")
        return []
    if command == "console-user":
        return _console_user_args(args)
    if len(args) != 1:
        raise CommandInputError(f"{command} takes one argument")
    if command == "quarantine":
        if args[0] not in ("on", "off"):
            raise CommandInputError("quarantine takes on or off")
        return [args[0]]
    limit = 3600 if command == "set-telemetry-period" else 240
    try:
        n = int(args[0])
    except ValueError:
        raise CommandInputError(f"{command} takes a whole number") from None
    if not 1 <= n <= limit:
        raise CommandInputError(f"{command} takes 1..{limit}")
    return [n]


def _console_user_args(args: list[str]) -> list[Any]:
    """console-user add NAME ROLE SEALED | remove NAME (SEALED: host_tools/console/remote.py)."""
    if len(args) >= 2 and not NAME_RE.match(args[1]):
        raise CommandInputError(f"bad user name {args[1]!r}: 1-32 of a-z 0-9 . _ -")
    if len(args) == 2 and args[0] == "remove":
        return list(args)
    if len(args) == 4 and args[0] == "add":
        if args[2] not in ROLES:
            raise CommandInputError(f"unknown role {args[2]!r}: one of {', '.join(ROLES)}")
        if not re.fullmatch(r"[0-9a-f]+", args[3]):
            raise CommandInputError("the sealed account must be hex (use `medsentry console user push`)")
        return list(args)
    raise CommandInputError("console-user takes add NAME ROLE SEALED or remove NAME")


def payload(command: str, args: list[Any], issuer: str, ctr: int, iat: int, validity_s: int = 300,
            device: str | None = None, model: str | None = None) -> dict[str, Any]:
    if (device is None) == (model is None):
        raise CommandInputError("a command names a device or a model")
    if not 0 < validity_s <= MAX_VALIDITY_S:
        raise CommandInputError(f"validity must be 1..{MAX_VALIDITY_S} s")
    p: dict[str, Any] = {"type": "medsentry-command", "cmd": command, "args": args, "iat": iat,
                         "exp": iat + validity_s, "issuer": issuer, "ctr": ctr}
    if device is not None:
        p["device"] = device
    else:
        p["model"] = model
    return p


def seal(key: Ed25519PrivateKey, p: dict[str, Any]) -> bytes:
    """The envelope bytes for payload `p` signed by `key`."""
    text = json.dumps(p, sort_keys=True, separators=(",", ":"))
    keyid = keyid_of(public_hex(key.public_key()))
    sig = key.sign(text.encode()).hex()
    env = json.dumps({"payload": text, "sig": {"keyid": keyid, "sig": sig}}, separators=(",", ":")).encode()
    if len(env) > MAX_ENVELOPE:
        raise CommandInputError(f"envelope of {len(env)} bytes > {MAX_ENVELOPE}")
    return env
