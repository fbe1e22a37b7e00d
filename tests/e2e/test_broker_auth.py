"""Broker authentication against a real Mosquitto: who may connect at all.

Each refusal is paired with a control (a valid identity connecting through the
same broker) so the test fails if the broker simply refused everyone.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.e2e.broker_fixtures import fleet, try_connect  # noqa: F401 - fleet is the pytest fixture
from host_tools.pki import FleetPKI


FLEET_DEVICES = [("pump-1", "pump-v2"), ("pump-2", "monitor-v1")]


def _connect(fleet, name):
    ident = fleet.identity(name)
    return try_connect(fleet.broker.host, fleet.broker.port, ident.ca, ident.cert, ident.key)


def test_valid_identities_connect(fleet):
    for name in ("pump-1", "pump-2", "collector", "operator"):
        assert _connect(fleet, name) is None, name


def test_client_without_certificate_is_refused(fleet):
    ca = fleet.pki.ca_cert_path
    assert try_connect(fleet.broker.host, fleet.broker.port, ca) is not None
    assert _connect(fleet, "pump-1") is None
    assert "peer did not return a certificate" in fleet.broker.log_text()


def test_expired_certificate_is_refused(fleet):
    past = datetime.now(timezone.utc) - timedelta(days=1)
    fleet.pki.issue("pump-old", "pump-v2", not_after=past)
    assert _connect(fleet, "pump-old") is not None
    assert _connect(fleet, "pump-1") is None
    # renewed with a valid certificate, the same device gets in again
    fleet.pki.issue("pump-old", "pump-v2", days=30, renew=True)
    assert _connect(fleet, "pump-old") is None


def test_revoked_certificate_is_refused(fleet):
    assert _connect(fleet, "pump-2") is None
    fleet.pki.revoke("pump-2")
    fleet.broker.restart()  # Mosquitto reads the CRL at start
    assert _connect(fleet, "pump-2") is not None
    assert _connect(fleet, "pump-1") is None
    assert _connect(fleet, "collector") is None


def test_certificate_from_another_ca_is_refused(fleet, tmp_path):
    rogue = FleetPKI(tmp_path / "rogue")
    rogue.init()
    rogue.issue("pump-1", "pump-v2")  # same name, wrong CA
    ident = rogue.device_identity("pump-1")
    assert try_connect(fleet.broker.host, fleet.broker.port, fleet.pki.ca_cert_path,
                       ident.cert, ident.key) is not None
    assert _connect(fleet, "pump-1") is None
