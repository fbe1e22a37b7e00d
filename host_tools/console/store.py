"""Console accounts kept by the host until provisioning seals them on a board.

One 0600 JSON file per board name or model under ``<workdir>/console/``. A record
holds the user's role, the PBKDF2-HMAC-SHA256 salt, iteration count and verifier
(the password itself is never stored) and the TOTP secret (base32), which the
provisioning tool hands to the board to be sealed under its device key."""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pyotp

ROLES = ("viewer", "technician", "admin")
# PBKDF2 iterations (see README "Maintenance console" for the measurement):
# 28 ms on the VM, ~0.3-1 s on a 100 MHz Cortex-M; the lockout bounds online
# guessing and the verifier is sealed under the device key on flash.
ITERATIONS = 1000
NAME_RE = re.compile(r"^[a-z0-9._-]{1,32}$")
TARGET_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
ISSUER = "medsentry"


class ConsoleError(Exception):
    """Bad input or a missing account: a clear message, nothing changed."""


@dataclass
class Enrolled:
    name: str
    role: str
    target: str
    uri: str
    secret: str


def _dir(workdir: str | Path) -> Path:
    return Path(workdir) / "console"


def ensure_dir(workdir: str | Path) -> Path:
    """<workdir>/console (0700), created when missing; a clear error otherwise."""
    d = _dir(workdir)
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not os.access(d, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable", str(d))
    except OSError as e:
        raise ConsoleError(f"cannot use {d}: {e.strerror or e}") from None
    return d


def _path(workdir: str | Path, target: str) -> Path:
    if not TARGET_RE.match(target):
        raise ConsoleError(f"bad board or model name {target!r}")
    return _dir(workdir) / f"{target}.json"


def load(workdir: str | Path, target: str) -> dict[str, dict]:
    p = _path(workdir, target)
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ConsoleError(f"{p}: unreadable account file: {e}") from None
    users = d.get("users") if isinstance(d, dict) else None
    if not isinstance(users, dict):
        raise ConsoleError(f"{p}: not an account file")
    return users


def _save(workdir: str | Path, target: str, users: dict[str, dict]) -> None:
    p = _path(workdir, target)
    p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"format": 1, "users": users}, f, indent=1)
    os.replace(tmp, p)


def verifier(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, 32)


def add(workdir: str | Path, target: str, name: str, role: str, password: str,
        iterations: int = ITERATIONS) -> Enrolled:
    if not NAME_RE.match(name):
        raise ConsoleError(f"bad user name {name!r}: 1-32 of a-z 0-9 . _ -")
    if role not in ROLES:
        raise ConsoleError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if len(password) < 10:
        raise ConsoleError("the password must have at least 10 characters")
    users = load(workdir, target)
    if name in users:
        raise ConsoleError(f"{name} already has an account on {target}; remove it first")
    if len(users) >= 16:
        raise ConsoleError(f"{target} has 16 accounts already")
    salt = os.urandom(16)
    secret = pyotp.random_base32()
    users[name] = {"role": role, "salt": salt.hex(), "iter": iterations,
                   "verifier": verifier(password, salt, iterations).hex(), "totp": secret}
    _save(workdir, target, users)
    uri = pyotp.TOTP(secret).provisioning_uri(name=f"{name}@{target}", issuer_name=ISSUER)
    return Enrolled(name, role, target, uri, secret)


def remove(workdir: str | Path, target: str, name: str) -> None:
    users = load(workdir, target)
    if name not in users:
        raise ConsoleError(f"{name} has no account on {target}")
    del users[name]
    _save(workdir, target, users)


def for_board(workdir: str | Path, device_id: str, model: str) -> list[dict]:
    """What provisioning seals on a board: its model's accounts, then its own
    (the board's own record wins for a name in both)."""
    merged = dict(load(workdir, model))
    merged.update(load(workdir, device_id))
    import base64

    return [{"name": n, "role": u["role"], "salt": u["salt"], "iter": int(u["iter"]),
             "verifier": u["verifier"], "totp": base64.b32decode(u["totp"]).hex()}
            for n, u in sorted(merged.items())]


def write_qr(uri: str, path: Path) -> str:
    """Write the otpauth:// URI as a PNG; returns the QR for a terminal."""
    import io

    import segno

    qr = segno.make(uri, error="m")
    qr.save(str(path), kind="png", scale=6)
    buf = io.StringIO()
    qr.terminal(out=buf, compact=True)
    return buf.getvalue()
