"""What provisioning writes into a board's flash, built from the fleet PKI.

Layout on the board (paths relative to the state partition, /state on the sim):

  identity.json        device id, model, broker address, the telemetry key SEALED
                       (hex), names of the files (agent/identity.py reads it)
  identity/cert.der    the device certificate (DER)
  identity/key.sealed  its private key (SEC1 DER, what mbedTLS loads), SEALED
  identity/ca.der      the fleet CA the broker's certificate must chain to
  config.json          only with --config: merged into the board's existing config
  tuf/root.json        only with --tuf-root: the trusted TUF root for updates

The two secrets (``Bundle.secrets``) are sealed ON THE BOARD under its device key
(agent/keystore.py) before they reach flash; the host never sees the device key.
Then the board's console lock fuse is programmed: that is the commit (before it
the ROM removes what was written; after it the board is provisioned and locked).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from host_tools.pki import FleetPKI, PkiError
from host_tools.pki.certs import common_name, model_of

from .errors import ProvisionError

IDENTITY_FORMAT = 2
IDENTITY_DIR = "identity"
FILES = {"cert": f"{IDENTITY_DIR}/cert.der", "key": f"{IDENTITY_DIR}/key.sealed", "ca": f"{IDENTITY_DIR}/ca.der"}
# Names the secrets are sealed under (agent/identity.py SEALED_*).
TLS_KEY = "tls-key"
TELEMETRY_KEY = "telemetry-key"


@dataclass(frozen=True)
class BrokerAddress:
    """Where the device connects: host/port, and the name its certificate must carry."""

    host: str
    port: int
    server_hostname: str | None = None
    #: Every node of a broker cluster, the first being (host, port); the board
    #: moves to the next when its node fails, and its egress guard allows them all.
    endpoints: tuple[tuple[str, int], ...] = ()

    @property
    def tls_name(self) -> str:
        return self.server_hostname or self.host


@dataclass
class Bundle:
    device_id: str
    model: str
    files: dict[str, bytes] = field(default_factory=dict)  # public files: path relative to /state -> bytes
    identity: dict = field(default_factory=dict)  # identity.json without telemetry.sealed_key
    secrets: dict[str, bytes] = field(default_factory=dict)  # seal name -> plaintext, sealed on the board


def has_pump(model: str) -> bool:
    """Vital-signs monitors carry no pump; every other model samples its pump too."""
    return not model.startswith("monitor")


def build_bundle(pki: FleetPKI, device_id: str, broker: BrokerAddress, *,
                 now: datetime | None = None) -> Bundle:
    """Identity files for DEVICE_ID; refuses revoked, expired or inconsistent identities."""
    try:
        rec = pki.device(device_id)
    except PkiError as exc:
        raise ProvisionError(f"{exc} (issue it first: `medsentry pki issue {device_id} --model MODEL`)") from None
    if rec.revoked:
        raise ProvisionError(f"device {device_id} was revoked on {rec.revoked}; it cannot be provisioned")
    try:
        tk = rec.active_key()
    except PkiError as exc:
        raise ProvisionError(f"{exc} (add one with `medsentry pki rotate-key {device_id}`)") from None
    if not 0 < broker.port < 65536:
        raise ProvisionError(f"bad broker port {broker.port}")
    ident = pki.device_identity(device_id)
    try:
        cert = x509.load_pem_x509_certificate(ident.cert.read_bytes())
        key = serialization.load_pem_private_key(ident.key.read_bytes(), None)
        ca = x509.load_pem_x509_certificate(ident.ca.read_bytes())
    except (OSError, ValueError) as exc:
        raise ProvisionError(f"cannot read {device_id}'s certificate, key or the fleet CA: {exc}") from None
    if common_name(cert) != device_id:
        raise ProvisionError(f"{ident.cert} names {common_name(cert)!r}, not {device_id!r}")
    cert_model = model_of(cert)
    if cert_model != rec.model:
        raise ProvisionError(f"{ident.cert} is for model {cert_model!r} but the device record says {rec.model!r}")
    when = now or datetime.now(timezone.utc)
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise ProvisionError(f"{device_id}'s certificate is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} "
                             f"to {cert.not_valid_after_utc:%Y-%m-%d}); renew it with `medsentry pki issue --renew`")
    files = {
        FILES["cert"]: cert.public_bytes(serialization.Encoding.DER),
        FILES["ca"]: ca.public_bytes(serialization.Encoding.DER),
    }
    secrets = {
        TLS_KEY: key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                   serialization.NoEncryption()),
        TELEMETRY_KEY: tk.key,
    }
    identity = {
        "version": IDENTITY_FORMAT,
        "device_id": device_id,
        "model": rec.model,
        "serial": rec.serial,
        "broker": _broker_entry(broker),
        "telemetry": {"kid": tk.kid.hex(), "base_iv": tk.base_iv.hex()},
        "files": dict(FILES),
        "pump": has_pump(rec.model),
        "provisioned_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return Bundle(device_id=device_id, model=rec.model, files=files, identity=identity, secrets=secrets)


def _broker_entry(broker: BrokerAddress) -> dict:
    entry: dict = {"host": broker.host, "port": broker.port, "server_hostname": broker.tls_name}
    if len(broker.endpoints) > 1:
        eps = [[h, int(p)] for h, p in broker.endpoints]
        if eps[0] != [broker.host, broker.port]:
            raise ValueError("broker endpoints must start with the broker's host and port")
        entry["endpoints"] = eps
    return entry


def merge_config(base: dict, over: dict) -> dict:
    """Deep merge (maps merged key by key, anything else replaced), as agent/config.py does."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(out.get(k), dict) and isinstance(v, dict):
            out[k] = merge_config(out[k], v)
        else:
            out[k] = v
    return out


def load_config_file(data: bytes, source: str) -> dict:
    try:
        cfg = json.loads(data)
    except ValueError as exc:
        raise ProvisionError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise ProvisionError(f"{source} must hold a JSON object")
    return cfg


def check_tuf_root(data: bytes, source: str) -> bytes:
    """A TUF root.json (signed/_type == root); returned unchanged (signatures cover its bytes)."""
    try:
        doc = json.loads(data)
        ok = isinstance(doc, dict) and doc["signed"]["_type"] == "root" and isinstance(doc["signatures"], list)
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ProvisionError(f"{source} is not a TUF root metadata file (signed._type must be \"root\")")
    return data
