"""Service identities (one certificate per collector instance) and renewal
revocation in the PKI and its CLI (issue 11 item 1)."""
from __future__ import annotations

from click.testing import CliRunner
from cryptography import x509

from host_tools.broker.config import render_acl
from host_tools.cli.main import cli
from host_tools.pki import FleetPKI


def run(workdir, *args):
    return CliRunner().invoke(cli, ["--workdir", str(workdir), *args])


def crl_serials(pki: FleetPKI) -> set[int]:
    crl = x509.load_pem_x509_crl(pki.crl_pem_path.read_bytes())
    return {r.serial_number for r in crl}


def test_issue_service_adds_a_collector_instance_to_the_acl(tmp_path):
    assert run(tmp_path, "pki", "init").exit_code == 0
    res = run(tmp_path, "pki", "issue-service", "collector-b")
    assert res.exit_code == 0, res.output
    pki = FleetPKI(tmp_path)
    assert pki.collector_identities() == ["collector", "collector-b"]
    cert = x509.load_pem_x509_certificate(pki.client_identity("collector-b").cert.read_bytes())
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "collector-b"
    acl = render_acl(pki.collector_identities())
    assert "user collector-b\ntopic read medsentry/+/telemetry" in acl
    assert "user operator\ntopic write medsentry/+/cmd" in acl


def test_issue_service_refuses_other_names(tmp_path):
    assert run(tmp_path, "pki", "init").exit_code == 0
    for bad in ("pump-9", "collector-B!", "broker"):
        res = run(tmp_path, "pki", "issue-service", bad)
        assert res.exit_code != 0 and "Traceback" not in res.output
        assert "not a service name" in res.output


def test_device_cannot_take_a_service_instance_name(tmp_path):
    assert run(tmp_path, "pki", "init").exit_code == 0
    res = run(tmp_path, "pki", "issue", "collector-x", "--model", "pump-v2")
    assert res.exit_code != 0 and "reserved" in res.output


def test_renew_puts_the_superseded_serial_on_the_crl(tmp_path):
    assert run(tmp_path, "pki", "init").exit_code == 0
    assert run(tmp_path, "pki", "issue", "pump-1", "--model", "pump-v2").exit_code == 0
    pki = FleetPKI(tmp_path)
    old = int(pki.device("pump-1").serial, 16)
    assert old not in crl_serials(pki)
    res = run(tmp_path, "pki", "issue", "pump-1", "--model", "pump-v2", "--renew")
    assert res.exit_code == 0, res.output
    new = int(pki.device("pump-1").serial, 16)
    assert old in crl_serials(pki) and new not in crl_serials(pki)
    assert pki.device("pump-1").revoked is None
