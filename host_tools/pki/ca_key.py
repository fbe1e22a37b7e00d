"""The fleet CA's private key at rest: encrypted with a passphrase.

The CA signs every device, broker and collector identity, so its key is an
offline key like the TUF root keys: ``ca/ca.key`` uses the key file format of
:mod:`host_tools.keyfile` (scrypt + AES-256-GCM) and a passphrase that meets
the policy of :mod:`host_tools.passphrase`. The passphrase comes from the
caller (the CLI asks on the terminal) or from ``MEDSENTRY_KEY_PASSPHRASE_FLEET_CA``.
A CA key written unencrypted by an older medsentry still loads;
``medsentry pki rekey`` encrypts it.

The other keys under ``pki/`` (broker, collector, operator and device TLS keys,
device telemetry keys) are online keys: services use them unattended, so they
stay unencrypted and are protected by mode 0600 (see the README).
"""
from __future__ import annotations

import os
from collections.abc import Callable

from host_tools import keyfile
from host_tools.passphrase import weakness

from .errors import PkiError

CA_PASSPHRASE_ENV = "MEDSENTRY_KEY_PASSPHRASE_FLEET_CA"
PassphraseArg = str | Callable[[], str] | None


def get_passphrase(source: PassphraseArg) -> str:
    """The CA passphrase from `source` (a string or a callable), else the environment."""
    if callable(source):
        return source()
    if source is not None:
        return source
    value = os.environ.get(CA_PASSPHRASE_ENV)
    if value is None:
        raise PkiError(f"the fleet CA key is encrypted: set {CA_PASSPHRASE_ENV} (or type it when asked)")
    return value


def encrypt_ca_key(key, passphrase: str) -> bytes:
    why = weakness(passphrase)
    if why:
        raise PkiError(f"the passphrase for the fleet CA key is {why}")
    return keyfile.encrypt(key, passphrase)


def load_ca_key(data: bytes, source: PassphraseArg) -> keyfile.Loaded:
    """Open ``ca/ca.key``; an old unencrypted file needs no passphrase."""
    try:
        passphrase = get_passphrase(source) if keyfile.is_encrypted(data) else None
        return keyfile.load(data, passphrase)
    except keyfile.BadPassphrase:
        raise PkiError(f"wrong passphrase for the fleet CA key (check {CA_PASSPHRASE_ENV} "
                       "or the passphrase typed)") from None
    except keyfile.KeyFileFormatError as exc:
        raise PkiError(f"the fleet CA key file is unreadable: {exc}") from None
