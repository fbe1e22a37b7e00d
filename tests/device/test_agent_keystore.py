# Secrets sealed under the device key (agent/keystore.py): round trip, the
# name bound in, tampering and a foreign key refused, no plaintext in the blob.
import devtest
from agent import keystore
from agent.keystore import SealError

DK = bytes(range(16))
SECRET = b"\x30\x77\x02\x01\x01\x04\x20" + bytes(range(32, 64))


def test_round_trip_and_fresh_nonces():
    a = keystore.seal(DK, "tls-key", SECRET)
    b = keystore.seal(DK, "tls-key", SECRET)
    assert a != b and a[:4] == b"MSS1"
    assert len(a) == 4 + keystore.NONCE_LEN + len(SECRET) + keystore.TAG_LEN
    assert keystore.unseal(DK, "tls-key", a) == SECRET == keystore.unseal(DK, "tls-key", b)
    assert SECRET[8:24] not in a  # no plaintext run survives in the blob


def test_known_answer():
    # Fixed nonce: the blob is deterministic (and equals the host's
    # cryptography AESCCM result: tests/e2e/test_device_secrets.py).
    blob = keystore.seal(DK, "telemetry-key", b"\x02" * 16, nonce=bytes(13))
    assert keystore.unseal(DK, "telemetry-key", blob) == b"\x02" * 16
    assert blob == keystore.seal(DK, "telemetry-key", b"\x02" * 16, nonce=bytes(13))


def test_refusals():
    blob = keystore.seal(DK, "tls-key", SECRET)
    devtest.raises(SealError, keystore.unseal, b"\x01" * 16, "tls-key", blob)
    devtest.raises(SealError, keystore.unseal, DK, "telemetry-key", blob)
    for i in (0, 5, len(blob) - 1):
        bad = bytearray(blob)
        bad[i] ^= 0x40
        devtest.raises(SealError, keystore.unseal, DK, "tls-key", bytes(bad))
    devtest.raises(SealError, keystore.unseal, DK, "tls-key", blob[:20])
    devtest.raises(SealError, keystore.unseal, DK, "tls-key", SECRET)
    devtest.raises(SealError, keystore.seal, DK, "tls-key", b"")
    devtest.raises(SealError, keystore.seal, b"short", "tls-key", SECRET)
