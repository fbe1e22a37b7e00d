"""Passphrase-encrypted private key files (release keys, the fleet CA key).

Format (``MEDSENTRY ENCRYPTED PRIVATE KEY``): a PEM-armoured JSON document
holding the scrypt parameters, a random 16-byte salt, a 12-byte nonce and the
AES-256-GCM encryption of the unencrypted PKCS#8 DER key; the parameters are
authenticated as GCM associated data, so a file with altered parameters does
not open. scrypt (RFC 7914) with N=2^17, r=8, p=1 (128 MiB of memory per
guess; the OWASP password-storage minimum) replaces the 2048 PBKDF2-SHA256
iterations of ``cryptography``'s BestAvailableEncryption, which costs an
attacker with a GPU almost nothing per guess. Unlocking takes about a second.

Old files (encrypted PKCS#8 PEM, and unencrypted PEM for a CA key made before
the CA was encrypted) still load; :func:`load` says they need an upgrade
(``medsentry keys rekey`` / ``medsentry pki rekey`` rewrite them).

Test-only: ``MEDSENTRY_TEST_ONLY_FAST_KDF=1`` writes new files with N=2^10 so
the test suite does not spend minutes in scrypt. Nothing else reads it; the
work factor is stored in each file, and files below the default are reported
as needing an upgrade.
"""
from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

LABEL = "MEDSENTRY ENCRYPTED PRIVATE KEY"
BEGIN = f"-----BEGIN {LABEL}-----".encode()
END = f"-----END {LABEL}-----".encode()
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
TEST_N = 2**10
FAST_KDF_ENV = "MEDSENTRY_TEST_ONLY_FAST_KDF"
# a hostile or corrupt file must not make the tool allocate gigabytes
MAX_N, MAX_R, MAX_P = 2**20, 32, 16


class KeyFileFormatError(ValueError):
    """The file is not a private key file this tool can read."""


class BadPassphrase(ValueError):
    """The passphrase does not open the key file."""


@dataclass
class Loaded:
    key: object  # a cryptography private key
    kdf: str  # e.g. "scrypt N=131072 r=8 p=1", "PBKDF2-SHA256 2048 (legacy)", "none"
    needs_upgrade: bool


def _default_n() -> int:
    return TEST_N if os.environ.get(FAST_KDF_ENV) == "1" else SCRYPT_N


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def encrypt(private_key, passphrase: str) -> bytes:
    """The key file bytes for `private_key` under `passphrase`."""
    n = _default_n()
    salt, nonce = os.urandom(16), os.urandom(12)
    head = {"v": 1, "kdf": "scrypt", "n": n, "r": SCRYPT_R, "p": SCRYPT_P,
            "salt": base64.b64encode(salt).decode(), "cipher": "aes-256-gcm",
            "nonce": base64.b64encode(nonce).decode()}
    der = private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    aad = json.dumps(head, sort_keys=True).encode()
    head["data"] = base64.b64encode(AESGCM(_derive(passphrase, salt, n, SCRYPT_R, SCRYPT_P))
                                    .encrypt(nonce, der, aad)).decode()
    body = base64.encodebytes(json.dumps(head, sort_keys=True).encode())
    return BEGIN + b"\n" + body + END + b"\n"


def is_encrypted(data: bytes) -> bool:
    return data.lstrip().startswith(BEGIN) or b"ENCRYPTED PRIVATE KEY" in data[:64]


def load(data: bytes, passphrase: str | None) -> Loaded:
    """Open a key file (new or old format). Raises BadPassphrase when the
    passphrase is wrong or missing for an encrypted file."""
    stripped = data.strip()
    if stripped.startswith(BEGIN):
        return _load_scrypt(stripped, passphrase)
    if b"-----BEGIN" not in stripped[:40]:
        raise KeyFileFormatError("not a PEM private key file")
    encrypted = b"ENCRYPTED" in stripped[:64]
    if encrypted and not passphrase:
        raise BadPassphrase("the key file is encrypted: a passphrase is needed")
    try:
        key = serialization.load_pem_private_key(stripped, passphrase.encode() if encrypted else None)
    except (TypeError, ValueError, UnsupportedAlgorithm):
        if encrypted:
            raise BadPassphrase("wrong passphrase") from None
        raise KeyFileFormatError("not a readable PEM private key") from None
    kdf = "PBKDF2 (legacy PKCS#8, 2048 iterations)" if encrypted else "none (unencrypted)"
    return Loaded(key, kdf, True)


def _load_scrypt(stripped: bytes, passphrase: str | None) -> Loaded:
    try:
        body = stripped[len(BEGIN):stripped.rindex(END)]
        doc = json.loads(base64.b64decode(body))
        data = base64.b64decode(doc.pop("data"), validate=True)
        salt = base64.b64decode(doc["salt"], validate=True)
        nonce = base64.b64decode(doc["nonce"], validate=True)
        n, r, p = int(doc["n"]), int(doc["r"]), int(doc["p"])
        ok = (doc.get("v") == 1 and doc.get("kdf") == "scrypt" and doc.get("cipher") == "aes-256-gcm"
              and 2 <= n <= MAX_N and n & (n - 1) == 0 and 1 <= r <= MAX_R and 1 <= p <= MAX_P
              and len(salt) >= 16 and len(nonce) == 12)
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise KeyFileFormatError(f"damaged or unsupported {LABEL} file")
    if not passphrase:
        raise BadPassphrase("the key file is encrypted: a passphrase is needed")
    aad = json.dumps(doc, sort_keys=True).encode()
    try:
        der = AESGCM(_derive(passphrase, salt, n, r, p)).decrypt(nonce, data, aad)
    except InvalidTag:
        raise BadPassphrase("wrong passphrase") from None
    key = serialization.load_der_private_key(der, None)
    return Loaded(key, f"scrypt N={n} r={r} p={p}", n < SCRYPT_N or r < SCRYPT_R)
