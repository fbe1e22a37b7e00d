"""Fleet PKI: certificates chain to the CA with the right names and usages, private
material is 0600, revocation lands in a CA-signed CRL, telemetry keys rotate."""
from __future__ import annotations

import ipaddress
import json
import stat
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from host_tools.cli.main import cli
from host_tools.pki import FleetPKI, PkiError, UnknownDevice
from host_tools.pki.certs import model_of


@pytest.fixture
def pki(tmp_path):
    p = FleetPKI(tmp_path / "work")
    p.init()
    return p


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_ca_server_and_service_identities(pki):
    ca = _cert(pki.ca_cert_path)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey) and ca.public_key().curve.name == "secp256r1"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server = _cert(pki.server_cert_path)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    store = Store([ca])
    verifier = PolicyBuilder().store(store).build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    verifier.verify(server, [])
    for role in ("collector", "operator"):
        ident = pki.client_identity(role)
        cert = _cert(ident.cert)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == role
        PolicyBuilder().store(store).build_client_verifier().verify(cert, [])
        assert _mode(ident.key) == 0o600
    for p in (pki.ca_key_path, pki.server_key_path):
        assert _mode(p) == 0o600
    with pytest.raises(PkiError, match="already exists"):
        pki.init()


def test_custom_broker_hosts(tmp_path):
    p = FleetPKI(tmp_path)
    p.init(server_hosts=["10.1.2.3", "broker.ward7.example"])
    san = _cert(p.server_cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]
    assert san.get_values_for_type(x509.DNSName) == ["broker.ward7.example"]


def test_issue_device_identity_and_telemetry_key(pki):
    rec = pki.issue("pump-0001", "pump-v2")
    ident = pki.device_identity("pump-0001")
    cert = _cert(ident.cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "pump-0001"
    assert model_of(cert) == "pump-v2"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "pump-v2"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    PolicyBuilder().store(Store([_cert(pki.ca_cert_path)])).build_client_verifier().verify(cert, [])
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=729) < life < timedelta(days=731)
    assert _mode(ident.key) == 0o600 and _mode(pki.record_path("pump-0001")) == 0o600
    tk = rec.active_key()
    assert (len(tk.kid), len(tk.key), len(tk.base_iv), tk.alg) == (8, 16, 13, 10)
    stored = json.loads(pki.record_path("pump-0001").read_text())
    assert stored["telemetry_keys"][0]["key"] == tk.key.hex()
    with pytest.raises(PkiError, match="already has"):
        pki.issue("pump-0001", "pump-v2")


@pytest.mark.parametrize("bad", ["", "a/b", "pump+1", "#", "x" * 65, "collector", "Operator", ".."])
def test_invalid_or_reserved_device_ids_are_refused(pki, bad):
    with pytest.raises(PkiError):
        pki.issue(bad, "pump-v2")


def test_validity_days_and_expired_not_after(pki):
    pki.issue("short", "pump-v2", days=2)
    c = _cert(pki.device_identity("short").cert)
    assert timedelta(days=1.9) < c.not_valid_after_utc - datetime.now(timezone.utc) < timedelta(days=2.1)
    pki.issue("old", "pump-v2", not_after="2020-01-01T00:00:00")
    old = _cert(pki.device_identity("old").cert)
    assert old.not_valid_after_utc == datetime(2020, 1, 1, tzinfo=timezone.utc)
    assert old.not_valid_before_utc < old.not_valid_after_utc
    store = Store([_cert(pki.ca_cert_path)])
    with pytest.raises(VerificationError):
        PolicyBuilder().store(store).build_client_verifier().verify(old, [])
    with pytest.raises(PkiError):
        pki.issue("neg", "pump-v2", days=-1)


def test_revoke_produces_signed_crl_in_pem_and_der(pki):
    pki.issue("pump-1", "pump-v2")
    pki.issue("pump-2", "pump-v2")
    before = x509.load_pem_x509_crl(pki.crl_pem_path.read_bytes())
    assert len(list(before)) == 0
    rec = pki.revoke("pump-1")
    pem = x509.load_pem_x509_crl(pki.crl_pem_path.read_bytes())
    der = x509.load_der_x509_crl(pki.crl_der_path.read_bytes())
    ca = _cert(pki.ca_cert_path)
    for crl in (pem, der):
        assert crl.is_signature_valid(ca.public_key())
        assert [r.serial_number for r in crl] == [int(rec.serial, 16)]
        assert crl.next_update_utc > datetime.now(timezone.utc) + timedelta(days=29)
    assert pem.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > \
        before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert rec.revoked and all(tk.retired for tk in pki.device("pump-1").telemetry_keys)
    assert pki.device("pump-2").revoked is None
    pki.revoke("pump-1")  # idempotent
    assert len(list(x509.load_pem_x509_crl(pki.crl_pem_path.read_bytes()))) == 1
    with pytest.raises(PkiError, match="revoked"):
        pki.issue("pump-1", "pump-v2", renew=True)
    with pytest.raises(UnknownDevice):
        pki.revoke("pump-9")


def test_rotate_and_retire_telemetry_keys(pki):
    first = pki.issue("mon-1", "monitor-v1").active_key()
    second = pki.rotate_key("mon-1")
    rec = pki.device("mon-1")
    assert rec.active_key().kid == second.kid != first.kid
    assert [tk.active for tk in rec.telemetry_keys] == [True, True]
    pki.retire_key("mon-1", first.kid.hex())
    assert [tk.active for tk in pki.device("mon-1").telemetry_keys] == [False, True]
    with pytest.raises(PkiError):
        pki.retire_key("mon-1", "00" * 8)
    # renewing the certificate keeps the telemetry keys
    pki.issue("mon-1", "monitor-v1", renew=True)
    assert [tk.kid for tk in pki.device("mon-1").telemetry_keys] == [first.kid, second.kid]


def test_cli_round_trip(tmp_path):
    r = CliRunner()
    wd = str(tmp_path / "w")
    assert r.invoke(cli, ["--workdir", wd, "pki", "issue", "x", "--model", "m"]).exit_code != 0  # no CA yet
    res = r.invoke(cli, ["--workdir", wd, "pki", "init", "--host", "127.0.0.1"])
    assert res.exit_code == 0, res.output
    res = r.invoke(cli, ["--workdir", wd, "pki", "issue", "pump-1", "--model", "pump-v2", "--days", "30"])
    assert res.exit_code == 0 and "telemetry key id" in res.output
    res = r.invoke(cli, ["--workdir", wd, "pki", "issue", "pump-x", "--model", "pump-v2",
                         "--not-after", "2021-06-01"])
    assert res.exit_code == 0 and "2021-06-01" in res.output
    assert r.invoke(cli, ["--workdir", wd, "pki", "issue", "bad/id", "--model", "m"]).exit_code != 0
    res = r.invoke(cli, ["--workdir", wd, "pki", "rotate-key", "pump-1"])
    assert res.exit_code == 0, res.output
    kid = res.output.strip().split()[-1]
    assert r.invoke(cli, ["--workdir", wd, "pki", "retire-key", "pump-1", kid]).exit_code == 0
    assert r.invoke(cli, ["--workdir", wd, "pki", "revoke", "pump-x"]).exit_code == 0
    res = r.invoke(cli, ["--workdir", wd, "pki", "list"])
    assert res.exit_code == 0 and "pump-1" in res.output
    res = r.invoke(cli, ["--workdir", wd, "broker", "config", "--port", "18883"])
    assert res.exit_code == 0, res.output
    conf = (tmp_path / "w" / "broker" / "mosquitto.conf").read_text()
    for line in ("require_certificate true", "use_identity_as_username true", "allow_anonymous false",
                 "listener 18883 127.0.0.1", "tls_version tlsv1.2", "crlfile "):
        assert line in conf
    acl = (tmp_path / "w" / "broker" / "acl").read_text()
    assert "pattern write medsentry/%u/telemetry" in acl and "pattern read medsentry/%u/cmd" in acl
