"""Console accounts and unlocks for boards already provisioned (the UART is closed).

* ``console-user`` commands: an account the host keeps (store.py) is sealed for one
  board and sent as a signed command (host_tools/ops/commands.py); the board opens
  it (agent/console/remote.py) and seals it again under its device key. Sealing:
  AES-CCM (16-byte tag) under ``HMAC-SHA256(telemetry key, "medsentry console-user
  v1")[:16]``, the board's active telemetry key being the one per-device secret the
  fleet host already shares with it; the AAD binds board, user name and role.
* Unlock tokens: an operator's Ed25519 signature over a challenge the console
  shows when the board clock is unset (also agent/console/remote.py)."""
from __future__ import annotations

import hashlib
import hmac
import os
import re

from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from host_tools.console import store
from host_tools.ops.keys import OpsError, OpsKeyring
from host_tools.pki import FleetPKI
from host_tools.pki.records import TelemetryKey

KDF_LABEL = b"medsentry console-user v1"
AAD_PREFIX = b"medsentry-console-user:"
NONCE_LEN = 13
TAG_LEN = 16
UNLOCK_PURPOSE = b"medsentry-console-unlock-v1"
CHALLENGE_RE = re.compile(r"^[0-9a-f]{32}$")


def account_key(tel_key: bytes) -> bytes:
    return hmac.new(tel_key, KDF_LABEL, hashlib.sha256).digest()[:16]


def aad(device_id: str, name: str, role: str) -> bytes:
    return AAD_PREFIX + f"{device_id}\n{name}\n{role}".encode()


def seal_account(tk: TelemetryKey, device_id: str, name: str, role: str, salt: bytes, iterations: int,
                 verifier: bytes, totp: bytes, nonce: bytes | None = None) -> str:
    """hex(kid | nonce | AES-CCM(salt | iterations | verifier | totp key))."""
    if len(salt) != 16 or len(verifier) != 32 or not 10 <= len(totp) <= 64 or not 1 <= iterations <= 1_000_000:
        raise store.ConsoleError("account record out of range (salt 16, verifier 32, TOTP key 10..64 bytes)")
    nonce = os.urandom(NONCE_LEN) if nonce is None else nonce
    pt = salt + iterations.to_bytes(4, "big") + verifier + totp
    ct = AESCCM(account_key(tk.key), tag_length=TAG_LEN).encrypt(nonce, pt, aad(device_id, name, role))
    return (tk.kid + nonce + ct).hex()


def console_user_args(workdir, device_id: str, name: str) -> list[str]:
    """``["add", name, role, sealed]`` for the account the host keeps for `device_id`
    (its own, else its model's), sealed for that board."""
    rec = FleetPKI(workdir).device(device_id)
    if rec.revoked:
        raise store.ConsoleError(f"device {device_id} is revoked")
    for acct in store.for_board(workdir, device_id, rec.model):
        if acct["name"] == name:
            sealed = seal_account(rec.active_key(), device_id, name, acct["role"], bytes.fromhex(acct["salt"]),
                                  int(acct["iter"]), bytes.fromhex(acct["verifier"]), bytes.fromhex(acct["totp"]))
            return ["add", name, acct["role"], sealed]
    raise store.ConsoleError(f"{name} has no account for {device_id} or its model {rec.model}: "
                             f"`medsentry console user add` first")


def unlock_message(device_id: str, user: str, challenge: str) -> bytes:
    return UNLOCK_PURPOSE + f"\n{device_id}\n{user}\n{challenge}".encode()


def unlock_token(ring: OpsKeyring, operator: str, passphrase: str, device_id: str, user: str,
                 challenge: str) -> str:
    """The token a console shows `unlock token:` for (the board checks the
    operator's key and role against its command policy)."""
    challenge = challenge.strip().lower()
    if not CHALLENGE_RE.match(challenge):
        raise OpsError(f"bad challenge {challenge!r}: the 32 hex digits the console shows")
    if not store.NAME_RE.match(user):
        raise OpsError(f"bad user name {user!r}")
    op = ring.get(operator)
    if op.revoked:
        raise OpsError(f"operator {operator} is revoked")
    if not ring.may(op, "unlock-console"):
        raise OpsError(f"role {op.role} of {operator} may not unlock consoles (unlock-console)")
    key = ring.private_key(operator, passphrase)
    return op.keyid[:16] + ":" + key.sign(unlock_message(device_id, user, challenge)).hex()
