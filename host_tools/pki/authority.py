"""The fleet PKI: CA, broker server certificate, client identities, devices, CRL.

On-disk layout under ``<workdir>/pki/`` (private keys and device records 0600)::

    ca/ca.key  ca/ca.crt  ca/crl.pem  ca/crl.der  ca/state.json   (ca.key: passphrase, ca_key.py)
    broker/server.key  broker/server.crt
    clients/collector.key  clients/collector.crt      (identity "collector": read-only)
    clients/operator.key   clients/operator.crt       (identity "operator": sends commands)
    clients/collector-<x>.key/.crt                    (one more collector instance each)
    devices/<id>.key  devices/<id>.crt  devices/<id>.json   (see records.py)

Certificates: ECDSA P-256 / SHA-256. The certificate CN is the identity the broker
uses as MQTT user name (``use_identity_as_username``). A device certificate carries
its model as OU and as the SAN URI ``urn:medsentry:model:<model>``, and the device id
as ``urn:medsentry:device:<id>``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from host_tools import keyfile

from . import certs
from .ca_key import PassphraseArg, encrypt_ca_key, get_passphrase, load_ca_key
from .errors import NotInitialized, PkiError, UnknownDevice
from .records import (
    DeviceRecord,
    TelemetryKey,
    check_device_id,
    check_model,
    service_role,
    iso,
    load_record,
    now_utc,
    save_record,
    write_private,
    write_public,
)

DEFAULT_SERVER_HOSTS = ("127.0.0.1", "localhost")
DEFAULT_DEVICE_DAYS = 730
DEFAULT_CA_DAYS = 3650
DEFAULT_SERVICE_DAYS = 825
DEFAULT_CRL_DAYS = 30
CLIENT_ROLES = ("collector", "operator")


@dataclass(frozen=True)
class Identity:
    """Paths of one TLS identity (certificate + private key) and the CA to trust."""

    name: str
    cert: Path
    key: Path
    ca: Path


def _parse_when(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise PkiError(f"not an ISO date/time: {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def validity(days: float | None, not_after: str | datetime | None,
             default_days: float) -> tuple[datetime, datetime]:
    """(not_before, not_after). An explicit ``not_after`` in the past gives an
    already-expired certificate (valid for the day before it), useful for tests."""
    now = now_utc()
    if not_after is not None:
        end = _parse_when(not_after)
    else:
        d = default_days if days is None else days
        if d <= 0:
            raise PkiError("--days must be positive (use --not-after for an expired cert)")
        end = now + timedelta(days=d)
    start = now - timedelta(minutes=5)
    if end <= start:
        start = end - timedelta(days=1)
    return start, end


def record_serial(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


class FleetPKI:
    """Operations on the fleet PKI kept under ``<workdir>/pki``."""

    def __init__(self, workdir: str | Path, ca_passphrase: PassphraseArg = None) -> None:
        """`ca_passphrase` (string or callable) unlocks the CA key when a
        certificate or CRL is signed; default: MEDSENTRY_KEY_PASSPHRASE_FLEET_CA."""
        self.workdir = Path(workdir).resolve()
        self.root = self.workdir / "pki"
        self.ca_passphrase = ca_passphrase
        self._ca_key = None

    # -- paths ---------------------------------------------------------------
    @property
    def ca_key_path(self) -> Path:
        return self.root / "ca" / "ca.key"

    @property
    def ca_cert_path(self) -> Path:
        return self.root / "ca" / "ca.crt"

    @property
    def crl_pem_path(self) -> Path:
        return self.root / "ca" / "crl.pem"

    @property
    def crl_der_path(self) -> Path:
        return self.root / "ca" / "crl.der"

    @property
    def state_path(self) -> Path:
        return self.root / "ca" / "state.json"

    @property
    def server_cert_path(self) -> Path:
        return self.root / "broker" / "server.crt"

    @property
    def server_key_path(self) -> Path:
        return self.root / "broker" / "server.key"

    @property
    def devices_dir(self) -> Path:
        return self.root / "devices"

    def collector_identities(self) -> list[str]:
        """Names of the issued collector identities (``collector``, ``collector-b``, ...):
        the broker ACL gives each the collector's read rights."""
        d = self.root / "clients"
        if not d.is_dir():
            return []
        return sorted(p.stem for p in d.glob("*.crt") if service_role(p.stem) == "collector")

    def client_identity(self, name: str) -> Identity:
        """Identity of a fleet role (``collector``, ``operator``) or extra client."""
        d = self.root / "clients"
        return Identity(name, d / f"{name}.crt", d / f"{name}.key", self.ca_cert_path)

    def device_identity(self, device_id: str) -> Identity:
        d = self.devices_dir
        return Identity(device_id, d / f"{device_id}.crt", d / f"{device_id}.key",
                        self.ca_cert_path)

    def record_path(self, device_id: str) -> Path:
        return self.devices_dir / f"{device_id}.json"

    # -- state ---------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return self.ca_cert_path.exists() and self.ca_key_path.exists()

    def require_init(self) -> None:
        if not self.initialized:
            raise NotInitialized(f"no fleet CA under {self.root}: run `medsentry pki init` first")

    def _ca(self) -> tuple[object, x509.Certificate]:
        self.require_init()
        if self._ca_key is None:
            self._ca_key = load_ca_key(self.ca_key_path.read_bytes(), self.ca_passphrase).key
        return self._ca_key, self.ca_certificate()

    def _state(self) -> dict:
        if self.state_path.exists():
            return json.loads(self.state_path.read_text())
        return {"crl_number": 0, "revoked": []}

    def _save_state(self, state: dict) -> None:
        write_private(self.state_path, (json.dumps(state, indent=2) + "\n").encode())

    def ca_certificate(self) -> x509.Certificate:
        self.require_init()
        return x509.load_pem_x509_certificate(self.ca_cert_path.read_bytes())

    def rekey_ca(self, new_passphrase: PassphraseArg = None) -> tuple[str, str]:
        """Re-encrypt the CA key with today's KDF (and `new_passphrase` if
        given); returns (old KDF, new KDF)."""
        self.require_init()
        loaded = load_ca_key(self.ca_key_path.read_bytes(), self.ca_passphrase)
        passphrase = get_passphrase(new_passphrase if new_passphrase is not None else self.ca_passphrase)
        data = encrypt_ca_key(loaded.key, passphrase)
        write_private(self.ca_key_path, data)
        self._ca_key = loaded.key
        return loaded.kdf, keyfile.load(data, passphrase).kdf

    # -- init ----------------------------------------------------------------
    def init(
        self,
        *,
        server_hosts: list[str] | tuple[str, ...] = DEFAULT_SERVER_HOSTS,
        ca_days: float = DEFAULT_CA_DAYS,
        service_days: float = DEFAULT_SERVICE_DAYS,
        crl_days: float = DEFAULT_CRL_DAYS,
        force: bool = False,
    ) -> None:
        """Create the fleet CA, the broker server certificate, the ``collector`` and
        ``operator`` client identities and an empty CRL. Refuses to overwrite an
        existing CA unless ``force`` (which invalidates every issued certificate)."""
        if self.initialized and not force:
            raise PkiError(f"a fleet CA already exists under {self.root} (use --force to replace it)")
        if not server_hosts:
            raise PkiError("the broker certificate needs at least one host name or IP")
        start, end = validity(ca_days, None, DEFAULT_CA_DAYS)
        key = certs.new_key()
        ca_cert = certs.make_ca(key, "medsentry fleet CA", start, end)
        write_private(self.ca_key_path, encrypt_ca_key(key, get_passphrase(self.ca_passphrase)))
        self._ca_key = key
        write_public(self.ca_cert_path, certs.cert_pem(ca_cert))
        self._save_state({"crl_number": 0, "revoked": []})
        self.issue_server(server_hosts, days=service_days)
        for role in CLIENT_ROLES:
            self.issue_client(role, days=service_days)
        self.refresh_crl(days=crl_days)

    def issue_server(self, hosts: list[str] | tuple[str, ...], *, days: float = DEFAULT_SERVICE_DAYS) -> Identity:
        """(Re)issue the broker's server certificate for the given IPs / DNS names."""
        import ipaddress

        ca_key, ca_cert = self._ca()
        ips, dns = [], []
        for h in hosts:
            try:
                ipaddress.ip_address(h)
                ips.append(h)
            except ValueError:
                dns.append(h)
        key = certs.new_key()
        start, end = validity(days, None, DEFAULT_SERVICE_DAYS)
        cert = certs.make_leaf(ca_key, ca_cert, key.public_key(), "medsentry-broker",
                               server=True, not_before=start, not_after=end,
                               dns_names=dns, ip_addresses=ips)
        write_private(self.server_key_path, certs.key_pem(key))
        write_public(self.server_cert_path, certs.cert_pem(cert))
        return Identity("broker", self.server_cert_path, self.server_key_path, self.ca_cert_path)

    def issue_client(self, name: str, *, days: float | None = None,
                     not_after: str | datetime | None = None) -> Identity:
        """Issue a non-device client identity with CN ``name``: a fleet role
        (``collector``, ``operator``), one more collector instance (``collector-b``:
        each instance needs its own certificate, its CN is its MQTT client id),
        or an extra one for tests."""
        if service_role(name) is None:
            check_device_id(name)
        ca_key, ca_cert = self._ca()
        key = certs.new_key()
        start, end = validity(days, not_after, DEFAULT_SERVICE_DAYS)
        cert = certs.make_leaf(ca_key, ca_cert, key.public_key(), name, server=False,
                               not_before=start, not_after=end, ou="fleet-service",
                               uris=[certs.SERVICE_URN_PREFIX + name])
        ident = self.client_identity(name)
        old = None
        if ident.cert.exists():
            try:
                old = x509.load_pem_x509_certificate(ident.cert.read_bytes())
            except ValueError:
                old = None  # unreadable: nothing a client could present either
        write_private(ident.key, certs.key_pem(key))
        write_public(ident.cert, certs.cert_pem(cert))
        if old is not None and old.serial_number != cert.serial_number:
            # A re-issued service identity (a stolen collector key, a rotation):
            # the old certificate goes on the CRL, as `pki issue --renew` does for devices.
            self._add_revoked(record_serial(old), name)
            self.refresh_crl()
        return ident

    # -- devices -------------------------------------------------------------
    def issue(
        self,
        device_id: str,
        model: str,
        *,
        days: float | None = None,
        not_after: str | datetime | None = None,
        renew: bool = False,
        taken_kids: set[bytes] | None = None,
    ) -> DeviceRecord:
        """Issue a device key + certificate and (for a new device) a telemetry key.

        ``renew`` re-issues the certificate of an existing device (new key pair,
        same telemetry keys); without it an existing device id is refused.
        ``taken_kids``: bulk issuing passes one set for all its calls (it must hold
        every kid already issued; each new kid is added) instead of re-reading every
        device record per call.
        """
        check_device_id(device_id)
        check_model(model)
        ca_key, ca_cert = self._ca()
        path = self.record_path(device_id)
        old: DeviceRecord | None = None
        if path.exists():
            old = load_record(path)
            if not renew:
                raise PkiError(f"device {device_id} already has an identity (use --renew to re-issue)")
            if old.revoked:
                raise PkiError(f"device {device_id} is revoked; it cannot be renewed")
        key = certs.new_key()
        start, end = validity(days, not_after, DEFAULT_DEVICE_DAYS)
        cert = certs.make_leaf(
            ca_key, ca_cert, key.public_key(), device_id, server=False,
            not_before=start, not_after=end, ou=model,
            uris=[certs.MODEL_URN_PREFIX + model, certs.DEVICE_URN_PREFIX + device_id],
        )
        ident = self.device_identity(device_id)
        write_private(ident.key, certs.key_pem(key))
        write_public(ident.cert, certs.cert_pem(cert))
        if old is not None and old.serial != record_serial(cert):
            # The superseded certificate must stop working: onto the CRL.
            self._add_revoked(old.serial, device_id)
        if old is not None:
            tkeys = old.telemetry_keys
        else:
            tkeys = [TelemetryKey.generate(self._all_kids() if taken_kids is None else taken_kids)]
            if taken_kids is not None:
                taken_kids.add(tkeys[0].kid)
        record = DeviceRecord(
            device_id=device_id,
            model=model,
            serial=record_serial(cert),
            not_before=iso(start) or "",
            not_after=iso(end) or "",
            cert=ident.cert.name,
            key=ident.key.name,
            revoked=None,
            telemetry_keys=tkeys,
        )
        save_record(path, record)
        if old is not None:
            self.refresh_crl()
        return record

    def _add_revoked(self, serial: str, identity: str) -> None:
        state = self._state()
        if not any(r["serial"] == serial for r in state["revoked"]):
            state["revoked"].append({"serial": serial, "identity": identity, "at": iso(now_utc())})
            self._save_state(state)

    def _all_kids(self) -> set[bytes]:
        return {tk.kid for rec in self.devices() for tk in rec.telemetry_keys}

    def device(self, device_id: str) -> DeviceRecord:
        check_device_id(device_id)
        path = self.record_path(device_id)
        if not path.exists():
            raise UnknownDevice(f"no device {device_id!r} in {self.devices_dir}")
        return load_record(path)

    def devices(self) -> list[DeviceRecord]:
        if not self.devices_dir.is_dir():
            return []
        return [load_record(p) for p in sorted(self.devices_dir.glob("*.json"))]

    def rotate_key(self, device_id: str) -> TelemetryKey:
        """Add a new telemetry key; older keys stay valid until retired."""
        rec = self.device(device_id)
        if rec.revoked:
            raise PkiError(f"device {device_id} is revoked")
        tk = TelemetryKey.generate(self._all_kids())
        rec.telemetry_keys.append(tk)
        save_record(self.record_path(device_id), rec)
        return tk

    def retire_key(self, device_id: str, kid_hex: str) -> TelemetryKey:
        """Retire one telemetry key: the collector rejects records sealed with it."""
        rec = self.device(device_id)
        for tk in rec.telemetry_keys:
            if tk.kid.hex() == kid_hex.lower():
                if tk.retired is None:
                    tk.retired = iso(now_utc())
                save_record(self.record_path(device_id), rec)
                return tk
        raise PkiError(f"device {device_id} has no telemetry key {kid_hex}")

    def revoke(self, device_id: str, *, crl_days: float = DEFAULT_CRL_DAYS) -> DeviceRecord:
        """Revoke the device certificate (CRL regenerated; a running broker must be
        restarted to load it) and retire all its telemetry keys."""
        rec = self.device(device_id)
        when = now_utc()
        state = self._state()
        if not any(r["serial"] == rec.serial for r in state["revoked"]):
            state["revoked"].append({"serial": rec.serial, "identity": device_id, "at": iso(when)})
            self._save_state(state)
        rec.revoked = rec.revoked or iso(when)
        for tk in rec.telemetry_keys:
            tk.retired = tk.retired or iso(when)
        save_record(self.record_path(device_id), rec)
        self.refresh_crl(days=crl_days)
        return rec

    def revoke_client(self, name: str, *, crl_days: float = DEFAULT_CRL_DAYS) -> None:
        """Revoke a non-device client certificate (e.g. a compromised collector)."""
        ident = self.client_identity(name)
        cert = x509.load_pem_x509_certificate(ident.cert.read_bytes())
        state = self._state()
        serial = format(cert.serial_number, "x")
        if not any(r["serial"] == serial for r in state["revoked"]):
            state["revoked"].append({"serial": serial, "identity": name, "at": iso(now_utc())})
            self._save_state(state)
        self.refresh_crl(days=crl_days)

    def refresh_crl(self, *, days: float = DEFAULT_CRL_DAYS) -> x509.CertificateRevocationList:
        """Re-sign the CRL (PEM for Mosquitto's ``crlfile``, DER for others).
        The broker rejects every client once ``next_update`` has passed, so refresh
        it well before ``days`` run out."""
        ca_key, ca_cert = self._ca()
        state = self._state()
        state["crl_number"] = int(state.get("crl_number", 0)) + 1
        now = now_utc()
        revoked = [(int(r["serial"], 16), datetime.fromisoformat(r["at"])) for r in state["revoked"]]
        crl = certs.make_crl(ca_key, ca_cert, revoked, last_update=now - timedelta(minutes=5),
                             next_update=now + timedelta(days=days), number=state["crl_number"])
        write_public(self.crl_pem_path, crl.public_bytes(serialization.Encoding.PEM))
        write_public(self.crl_der_path, crl.public_bytes(serialization.Encoding.DER))
        self._save_state(state)
        return crl

    def revoked_serials(self) -> set[int]:
        return {int(r["serial"], 16) for r in self._state()["revoked"]}
