# COSE_Encrypt0 sealing per host_tools/collector/SEALING.md: the worked
# example byte for byte, round trips, and a tamper / malformed table.
import binascii
import json

import devtest
from agent.telemetry import cbor, cose
from agent.telemetry.cose import CoseAuthError, CoseError

u = binascii.unhexlify
TOPIC = "medsentry/pump-0001/telemetry"


def _vector():
    with open(devtest.repo_path("host_tools/collector/sealing_vector.json")) as f:
        return json.load(f)


def _sealer(v):
    return cose.Sealer(u(v["kid"]), u(v["key"]), u(v["base_iv"]))


def test_worked_example_byte_for_byte():
    v = _vector()
    assert cose.piv_from_seq(v["seq"]) == u(v["partial_iv"])
    assert cose.make_nonce(u(v["base_iv"]), u(v["partial_iv"])) == u(v["nonce"])
    assert cose.make_aad(v["topic"]) == u(v["aad"])
    msg = _sealer(v).seal(v["seq"], u(v["plaintext"]), v["topic"])
    assert msg == u(v["message"])
    seq, pt = _sealer(v).open(u(v["message"]), v["topic"])
    assert seq == 258 and pt == u(v["plaintext"])
    # The plaintext decodes to the documented record.
    rec = cbor.loads(pt)
    assert rec["seq"] == 258 and rec["temp"] == 36.75 and rec["pump"]["alarms"] == []


def test_piv_minimal_encoding():
    assert cose.piv_from_seq(1) == b"\x01"
    assert cose.piv_from_seq(255) == b"\xff"
    assert cose.piv_from_seq(256) == b"\x01\x00"
    assert cose.piv_from_seq((1 << 40) - 1) == b"\xff" * 5
    devtest.raises(CoseError, cose.piv_from_seq, 0)
    devtest.raises(CoseError, cose.piv_from_seq, 1 << 40)
    devtest.raises(CoseError, cose.seq_from_piv, b"")
    devtest.raises(CoseError, cose.seq_from_piv, b"\x00\x01")
    devtest.raises(CoseError, cose.seq_from_piv, b"\x01" * 6)


def test_round_trip_many_sizes():
    s = cose.Sealer(b"K" * 8, bytes(range(16)), bytes(range(13)))
    for seq in (1, 23, 24, 255, 256, 65535, 65536, (1 << 40) - 1):
        for ln in (0, 1, 23, 24, 100, 255, 256, 900):
            pt = bytes([seq & 0xFF]) * ln
            msg = s.seal(seq, pt, TOPIC)
            assert msg[:6] == b"\xd0\x83\x43\xa1\x01\x0a"
            head = 1 if ln + 8 < 24 else (2 if ln + 8 < 256 else 3)
            # 6 prefix + a2 04 48 kid(8) + 06 4x piv + ciphertext head + tag 8
            assert len(msg) - ln == 27 + len(cose.piv_from_seq(seq)) + head
            assert s.open(msg, TOPIC) == (seq, pt)
    devtest.raises(CoseError, s.seal, 1, bytes(1000), TOPIC)  # above 1024 bytes


def test_tamper_table():
    v = _vector()
    s = _sealer(v)
    msg = u(v["message"])
    topic = v["topic"]
    # Every single-bit flip is rejected with a CoseError (structure or tag).
    for i in range(len(msg)):
        bad = bytearray(msg)
        bad[i] ^= 0x01
        devtest.raises(CoseError, s.open, bytes(bad), topic)
    # Flips in the ciphertext specifically are authentication failures.
    bad = bytearray(msg)
    bad[-1] ^= 0x80
    devtest.raises(CoseAuthError, s.open, bytes(bad), topic)
    # Moved to another device's topic or to the status topic.
    devtest.raises(CoseAuthError, s.open, msg, "medsentry/pump-0002/telemetry")
    devtest.raises(CoseAuthError, s.open, msg, "medsentry/pump-0001/status")
    # Another key with the same kid; another kid.
    other = cose.Sealer(u(v["kid"]), bytes(16), u(v["base_iv"]))
    devtest.raises(CoseAuthError, other.open, msg, topic)
    other_kid = cose.Sealer(b"\x00" * 8, u(v["key"]), u(v["base_iv"]))
    devtest.raises(CoseError, other_kid.open, msg, topic)
    # Every truncation.
    for i in range(len(msg)):
        devtest.raises(CoseError, s.open, msg[:i], topic)


def _msg(tagged=True, prot=b"\xa1\x01\x0a", unprot=None, ct=b"\x00" * 16, extra=None):
    if unprot is None:
        unprot = {4: b"m" * 8, 6: b"\x01"}
    arr = [prot, unprot, ct]
    if extra is not None:
        arr.append(extra)
    obj = cbor.Tag(16, arr) if tagged else arr
    return cbor.dumps(obj)


MALFORMED = [
    (lambda: _msg(tagged=False), "untagged"),
    (lambda: cbor.dumps(cbor.Tag(17, [b"\xa1\x01\x0a", {4: b"m" * 8, 6: b"\x01"}, b"\x00" * 16])), "tag 17"),
    (lambda: _msg(extra=b""), "array of 4"),
    (lambda: _msg(prot=b"\xa1\x01\x0b"), "alg 11"),
    (lambda: _msg(prot=b""), "empty protected"),
    (lambda: _msg(prot={1: 10}), "protected not bstr"),
    (lambda: _msg(unprot={4: b"m" * 8}), "no PIV"),
    (lambda: _msg(unprot={6: b"\x01"}), "no kid"),
    (lambda: _msg(unprot={4: b"m" * 8, 6: b"\x01", 5: bytes(13)}), "IV header present"),
    (lambda: _msg(unprot={4: b"m" * 7, 6: b"\x01"}), "kid 7 bytes"),
    (lambda: _msg(unprot={4: "mmmmmmmm", 6: b"\x01"}), "kid text"),
    (lambda: _msg(unprot={4: b"m" * 8, 6: b"\x00\x01"}), "PIV not minimal"),
    (lambda: _msg(unprot={4: b"m" * 8, 6: b""}), "PIV empty"),
    (lambda: _msg(unprot={4: b"m" * 8, 6: b"\x01" * 6}), "PIV 6 bytes"),
    (lambda: _msg(unprot={4: b"m" * 8, 6: 1}), "PIV int"),
    (lambda: _msg(unprot=[]), "unprotected not a map"),
    (lambda: _msg(ct=b"\x00" * 7), "ciphertext shorter than tag"),
    (lambda: _msg(ct="text"), "ciphertext text"),
    (lambda: b"\xd0\x83\x43\xa1\x01\x0a\xa2\x04\x58\x08" + b"m" * 8 + b"\x06\x41\x01\x50" + bytes(16), "non-shortest length"),
    (lambda: b"\xd0\x83\x43\xa1\x01\x0a\xa2\x06\x41\x01\x04\x48" + b"m" * 8 + b"\x50" + bytes(16), "headers out of order"),
    (lambda: _msg() + b"\x00", "trailing byte"),
    (lambda: bytes(2000), "oversize"),
    (lambda: b"", "empty"),
]


def test_malformed_table():
    s = cose.Sealer(b"m" * 8, bytes(16), bytes(13))
    for make, why in MALFORMED:
        data = make()
        e = devtest.raises(CoseError, cose.parse, data)
        assert e is not None, why
        devtest.raises(CoseError, s.open, data, TOPIC)
    # The well-formed variant of the same message parses (and fails only on the tag).
    devtest.raises(CoseAuthError, s.open, _msg(), TOPIC)
    assert cose.parse(_msg())[0] == b"m" * 8


def test_bad_key_material():
    devtest.raises(CoseError, cose.Sealer, b"k" * 7, bytes(16), bytes(13))
    devtest.raises(CoseError, cose.Sealer, b"k" * 8, bytes(15), bytes(13))
    devtest.raises(CoseError, cose.Sealer, b"k" * 8, bytes(16), bytes(12))
