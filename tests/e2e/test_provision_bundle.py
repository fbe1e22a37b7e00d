"""What provisioning writes, built from the fleet PKI (no board needed): the DER
identity mbedTLS loads, identity.json, and the refusals before any UART traffic."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from host_tools.pki import FleetPKI
from host_tools.provision import (
    BrokerAddress,
    ProvisionError,
    build_bundle,
    check_tuf_root,
    load_config_file,
    merge_config,
    provision,
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = FleetPKI(tmp_path_factory.mktemp("pki"))
    p.init()
    p.issue("pump-1", "pump-v2")
    p.issue("mon-1", "monitor-v1")
    p.issue("old-1", "pump-v2", not_after=(datetime.now(timezone.utc) + timedelta(days=1)).isoformat())
    p.issue("gone-1", "pump-v2")
    p.revoke("gone-1")
    return p


def test_bundle_holds_the_device_identity(pki):
    b = build_bundle(pki, "pump-1", BrokerAddress("127.0.0.1", 8883))
    ident = b.identity
    tk = pki.device("pump-1").active_key()
    assert ident["device_id"] == "pump-1" and ident["model"] == "pump-v2" and ident["pump"] is True
    assert ident["broker"] == {"host": "127.0.0.1", "port": 8883, "server_hostname": "127.0.0.1"}
    # the telemetry key travels as a secret, sealed on the board into identity.json
    assert ident["telemetry"] == {"kid": tk.kid.hex(), "base_iv": tk.base_iv.hex()}
    assert b.secrets["telemetry-key"] == tk.key
    assert ident["files"] == {"cert": "identity/cert.der", "key": "identity/key.sealed", "ca": "identity/ca.der"}
    files = {ident["files"][k]: b.files[ident["files"][k]] for k in ("cert", "ca")}
    assert "identity/key.sealed" not in b.files  # written sealed by the board, never in the clear
    cert = x509.load_der_x509_certificate(files["identity/cert.der"])
    key = serialization.load_der_private_key(b.secrets["tls-key"], None)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    ca = x509.load_der_x509_certificate(files["identity/ca.der"])
    cert.verify_directly_issued_by(ca)
    assert b.secrets["tls-key"][:1] == b"\x30"  # SEC1 DER, what mbedTLS loads
    assert build_bundle(pki, "mon-1", BrokerAddress("h", 1, "broker.example")).identity["pump"] is False


def test_cluster_broker_recorded_by_broker_run_reaches_the_identity(pki, tmp_path):
    from host_tools.provision import broker_from_workdir

    (tmp_path / "broker").mkdir()
    (tmp_path / "broker" / "address.json").write_text(json.dumps(
        {"host": "127.0.0.1", "port": 18001, "mqtt": [["127.0.0.1", 18001], ["127.0.0.1", 18002]],
         "amqp": [["127.0.0.1", 15671]]}))
    rec = broker_from_workdir(tmp_path)
    assert rec is not None and rec.endpoints == (("127.0.0.1", 18001), ("127.0.0.1", 18002))
    ident = build_bundle(pki, "pump-1", rec).identity
    assert ident["broker"]["endpoints"] == [["127.0.0.1", 18001], ["127.0.0.1", 18002]]
    # a single broker: no endpoint list
    (tmp_path / "broker" / "address.json").write_text(json.dumps({"host": "127.0.0.1", "port": 8883}))
    assert "endpoints" not in build_bundle(pki, "pump-1", broker_from_workdir(tmp_path)).identity["broker"]
    with pytest.raises(ValueError):
        build_bundle(pki, "pump-1", BrokerAddress("127.0.0.1", 1, endpoints=(("h", 2), ("h", 3))))


def test_refusals(pki):
    addr = BrokerAddress("127.0.0.1", 8883)
    with pytest.raises(ProvisionError, match="pki issue"):
        build_bundle(pki, "nobody-1", addr)
    with pytest.raises(ProvisionError, match="revoked"):
        build_bundle(pki, "gone-1", addr)
    with pytest.raises(ProvisionError, match="not valid now"):
        build_bundle(pki, "old-1", addr, now=datetime.now(timezone.utc) + timedelta(days=3))
    with pytest.raises(ProvisionError, match="port"):
        build_bundle(pki, "pump-1", BrokerAddress("127.0.0.1", 0))
    # refused before the serial port is even opened
    with pytest.raises(ProvisionError, match="revoked"):
        provision(pki, "gone-1", "/dev/does-not-exist", addr)
    with pytest.raises(ProvisionError, match="TUF root"):
        provision(pki, "pump-1", "/dev/does-not-exist", addr, tuf_root=b'{"signed": {"_type": "targets"}}')


def test_config_and_root_checks():
    assert merge_config({"update": {"channel": "stable", "check_every_s": 300}, "watchdog_ms": 5000},
                        {"update": {"check_every_s": 3}, "telemetry": {"period_ms": 500}}) == {
        "update": {"channel": "stable", "check_every_s": 3}, "watchdog_ms": 5000,
        "telemetry": {"period_ms": 500}}
    with pytest.raises(ProvisionError, match="JSON object"):
        load_config_file(b"[1]", "x.json")
    with pytest.raises(ProvisionError, match="not valid JSON"):
        load_config_file(b"{", "x.json")
    root = json.dumps({"signed": {"_type": "root"}, "signatures": []}).encode()
    assert check_tuf_root(root, "r") == root
    with pytest.raises(ProvisionError):
        check_tuf_root(b"not json", "r")
