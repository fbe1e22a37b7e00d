"""Signing keys: generation, encrypted storage, loading as securesystemslib signers.

Each key lives in its own file ``<workdir>/keys/<name>-<keyid[:12]>.pem``: a
private key encrypted with that key's own passphrase (scrypt + AES-256-GCM, see
:mod:`host_tools.keyfile`; older PBKDF2 files still load and ``keys rekey``
upgrades them), next to ``<...>.pub.json`` holding
the public key exactly as TUF metadata writes it. Files are found by key id,
so a rotation can write the new key before the metadata that trusts it and a
crash in between never loses the key that is trusted.

Key names: ``root-1`` .. ``root-N``, ``targets``, ``snapshot``, ``timestamp``
and ``model-<model>`` for each device model's delegated role. Passphrases come
from a :class:`PassphraseSource`; :class:`EnvPassphrases` reads
``MEDSENTRY_KEY_PASSPHRASE_<NAME>`` (``<NAME>`` upper-cased, ``-`` -> ``_``,
e.g. ``MEDSENTRY_KEY_PASSPHRASE_ROOT_1``, ``..._MODEL_PUMP_V2``) and, for the
replacement key of a rotation, ``MEDSENTRY_NEW_KEY_PASSPHRASE_<NAME>``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.signer import CryptoSigner, SSlibKey

from host_tools import keyfile
from host_tools.passphrase import weakness

from .errors import (
    ConfigError,
    KeyFileError,
    KeyMismatch,
    MissingKey,
    MissingPassphrase,
    WeakPassphrase,
    WrongPassphrase,
)
from .fsutil import Write, move, write_atomic
from .layout import Layout

ONLINE_ROLES = ("targets", "snapshot", "timestamp")
ENV_PREFIX = "MEDSENTRY_KEY_PASSPHRASE_"
ENV_NEW_PREFIX = "MEDSENTRY_NEW_KEY_PASSPHRASE_"


def env_name(keyname: str, new: bool = False) -> str:
    """Environment variable holding the passphrase of key `keyname`."""
    return (ENV_NEW_PREFIX if new else ENV_PREFIX) + keyname.upper().replace("-", "_")


def model_key_name(model: str) -> str:
    return f"model-{model}"


def root_key_name(i: int) -> str:
    return f"root-{i}"


class PassphraseSource(Protocol):
    """Supplies passphrases. `existing` unlocks a key file; `new` protects a new one
    (`rotation` is True when it replaces a key of the same name)."""

    def existing(self, keyname: str) -> str: ...

    def new(self, keyname: str, rotation: bool = False) -> str: ...


class EnvPassphrases:
    """Passphrases from environment variables only (automation, cron)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def existing(self, keyname: str) -> str:
        var = env_name(keyname)
        value = self.environ.get(var)
        if value is None:
            raise MissingPassphrase(f"no passphrase for key {keyname!r}: set {var}")
        return value

    def new(self, keyname: str, rotation: bool = False) -> str:
        candidates = [env_name(keyname, new=True)] if rotation else [env_name(keyname)]
        for var in candidates:
            if var in self.environ:
                return self.environ[var]
        raise MissingPassphrase(
            f"no passphrase for the new key {keyname!r}: set {' or '.join(candidates)}"
        )


def check_new_passphrase(keyname: str, passphrase: str) -> None:
    """The policy of :mod:`host_tools.passphrase` (length and strength)."""
    why = weakness(passphrase)
    if why:
        raise WeakPassphrase(f"the passphrase for key {keyname!r} is {why}")


def generate_private_key(key_type: str):
    """A new private key: Ed25519 or ECDSA P-256."""
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    raise ConfigError(f"unknown key type {key_type!r}: use ed25519 or ecdsa")


def public_sslib_key(private_key) -> SSlibKey:
    """Public key as TUF metadata carries it (default scheme for the key type:
    ``ed25519`` or ``ecdsa-sha2-nistp256``)."""
    return SSlibKey.from_crypto(private_key.public_key())


@dataclass
class NewKey:
    """A generated key not yet written to disk."""

    name: str
    private_key: object
    public: SSlibKey
    passphrase: str

    @property
    def keyid(self) -> str:
        return self.public.keyid

    def signer(self) -> CryptoSigner:
        return CryptoSigner(self.private_key, self.public)


class KeyStore:
    """Encrypted key files under ``<workdir>/keys``."""

    def __init__(self, layout: Layout, passphrases: PassphraseSource) -> None:
        self.layout = layout
        self.passphrases = passphrases

    # -- generation ---------------------------------------------------------
    def new_key(self, name: str, key_type: str, rotation: bool = False) -> NewKey:
        """Generate a key in memory and get its passphrase (nothing written)."""
        passphrase = self.passphrases.new(name, rotation=rotation)
        check_new_passphrase(name, passphrase)
        priv = generate_private_key(key_type)
        return NewKey(name, priv, public_sslib_key(priv), passphrase)

    def _stem(self, name: str, keyid: str) -> str:
        return f"{name}-{keyid[:12]}"

    def key_files(self, key: NewKey) -> list[Write]:
        """The encrypted private key file and its public key file, to be
        landed by a journaled change (before the metadata that trusts them)."""
        stem = self._stem(key.name, key.keyid)
        pem = keyfile.encrypt(key.private_key, key.passphrase)
        pub = {"name": key.name, "keyid": key.keyid, "key": key.public.to_dict()}
        return [
            Write(self.layout.keys / f"{stem}.pem", pem, 0o600),
            Write(self.layout.keys / f"{stem}.pub.json", (json.dumps(pub, indent=2, sort_keys=True) + "\n").encode()),
        ]

    # -- lookup -------------------------------------------------------------
    def index(self) -> dict[str, tuple[str, Path]]:
        """keyid -> (key name, pem path) for every active key file."""
        out: dict[str, tuple[str, Path]] = {}
        if not self.layout.keys.is_dir():
            return out
        for pub in sorted(self.layout.keys.glob("*.pub.json")):
            try:
                doc = json.loads(pub.read_text())
                keyid, name = doc["keyid"], doc["name"]
            except (ValueError, KeyError):
                continue
            pem = pub.with_name(pub.name[: -len(".pub.json")] + ".pem")
            if pem.exists():
                out[keyid] = (name, pem)
        return out

    def name_of(self, keyid: str) -> str | None:
        entry = self.index().get(keyid)
        return entry[0] if entry else None

    def has_key(self, keyid: str) -> bool:
        return keyid in self.index()

    def any_keys(self) -> bool:
        return self.layout.keys.is_dir() and any(self.layout.keys.glob("*.pem"))

    def signer(self, keyid: str, role: str) -> CryptoSigner:
        """Unlock the key with id `keyid` (trusted for `role`)."""
        entry = self.index().get(keyid)
        if entry is None:
            raise MissingKey(
                f"the key for role {role!r} (keyid {keyid[:12]}…) is not in {self.layout.keys}"
            )
        name, pem_path = entry
        priv = self.open(name, pem_path).key
        public = public_sslib_key(priv)
        if public.keyid != keyid:
            raise KeyMismatch(
                f"key file {pem_path.name} holds key {public.keyid[:12]}…, "
                f"but role {role!r} trusts {keyid[:12]}…"
            )
        return CryptoSigner(priv, public)

    def open(self, name: str, pem_path: Path, passphrase: str | None = None) -> keyfile.Loaded:
        """Decrypt key file `pem_path` of key `name`. A wrong passphrase that was
        typed is asked for again (the source's `again`, if it has one: at most
        3 tries in all); one from the environment or the caller fails at once."""
        again = getattr(self.passphrases, "again", None) if passphrase is None else None
        if passphrase is None:
            passphrase = self.passphrases.existing(name)
        data = pem_path.read_bytes()
        while True:
            try:
                return keyfile.load(data, passphrase)
            except keyfile.BadPassphrase:
                retry = again(name) if again is not None else None
                if retry is None:
                    raise WrongPassphrase(
                        f"wrong passphrase for key {name!r} ({pem_path.name}); "
                        f"check {env_name(name)} or the passphrase typed"
                    ) from None
                passphrase = retry
            except keyfile.KeyFileFormatError as exc:
                raise KeyFileError(f"{pem_path}: {exc}") from None

    def rekey(self, keyid: str, new_passphrase: bool = False) -> tuple[str, str, str] | None:
        """Re-encrypt key `keyid` with today's KDF; a new passphrase is asked for
        (MEDSENTRY_NEW_KEY_PASSPHRASE_<NAME> or the prompt) when `new_passphrase`
        or when the current one fails the policy. Returns (name, old KDF, new
        KDF), or None when the file was current already."""
        name, pem_path = self.index()[keyid]
        current = self.passphrases.existing(name)
        loaded = self.open(name, pem_path, current)
        if public_sslib_key(loaded.key).keyid != keyid:
            raise KeyMismatch(f"key file {pem_path.name} does not hold key {keyid[:12]}…")
        passphrase = current
        if new_passphrase or weakness(current):
            passphrase = self.passphrases.new(name, rotation=True)
            check_new_passphrase(name, passphrase)
        elif not loaded.needs_upgrade:
            return None
        fresh = keyfile.encrypt(loaded.key, passphrase)
        write_atomic(pem_path, fresh, mode=0o600)
        return name, loaded.kdf, keyfile.load(fresh, passphrase).kdf

    def threshold_signers(
        self, keyids: list[str], threshold: int, role: str
    ) -> list[CryptoSigner]:
        """Unlock keys among `keyids` until `threshold` are available.

        Missing key files and keys without a supplied passphrase are skipped; a
        wrong passphrase stops at once. Fewer than `threshold` -> MissingKey."""
        signers: list[CryptoSigner] = []
        problems: list[str] = []
        for keyid in keyids:
            if len(signers) >= threshold:
                break
            try:
                signers.append(self.signer(keyid, role))
            except (MissingKey, MissingPassphrase) as exc:
                problems.append(str(exc))
        if len(signers) < threshold:
            raise MissingKey(
                f"role {role!r} needs {threshold} key(s) but only {len(signers)} could be unlocked: "
                + "; ".join(problems)
            )
        return signers

    def retire(self, keyid: str) -> None:
        """Move a replaced key's files to ``keys/retired`` (after its rotation committed)."""
        retire_key_files(self.layout, keyid)


def retire_key_files(layout: Layout, keyid: str) -> None:
    """Move the files of key `keyid` to ``keys/retired`` (done already is fine):
    the private key first, so an interrupted move never leaves an active
    ``.pub.json`` whose key file is gone unnoticed (index() skips it)."""
    if not layout.keys.is_dir():
        return
    for pub in sorted(layout.keys.glob("*.pub.json")):
        try:
            doc = json.loads(pub.read_text())
        except ValueError:
            continue
        if doc.get("keyid") != keyid:
            continue
        pem = pub.with_name(pub.name[: -len(".pub.json")] + ".pem")
        for path in (pem, pub):
            if path.exists():
                move(path, layout.retired_keys / path.name)
