"""Posture fields computed on the device (agent/security/posture.py), checked
against `cryptography` on certificates made here: notAfter as UTCTime (< 2050)
and GeneralizedTime (>= 2050), and garbage giving None, never an exception."""
from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from agent.security import posture


@pytest.mark.parametrize("not_after", [datetime.datetime(2027, 3, 1, 0, 0, 1),
                                       datetime.datetime(2049, 12, 31, 23, 59, 59),
                                       datetime.datetime(2056, 2, 29, 12, 30, 0)])
def test_cert_not_after_matches_cryptography(not_after):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "pump-0001")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(datetime.datetime(2026, 1, 1))
            .not_valid_after(not_after).sign(key, hashes.SHA256()))
    der = cert.public_bytes(Encoding.DER)
    assert posture.cert_not_after(der) == int(cert.not_valid_after_utc.timestamp())
    for cut in (0, 1, 10, 40):  # cut before the validity field ends
        assert posture.cert_not_after(der[:cut]) is None
