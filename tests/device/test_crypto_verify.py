# Signature verification (updater.crypto.verify) against golden vectors made
# by tests/device/data/crypto/make_vectors.py with securesystemslib and
# cryptography: good signatures per scheme and table-driven negative cases.
# Runs on CPython and on the MicroPython VM (256 KiB heap).
import binascii
import json

import devtest
from updater.crypto import der
from updater.crypto.verify import UnsupportedKeyError, load_key, verify_signature


def _cases(name):
    # JSON Lines: one case at a time, so the heap never holds the table.
    with open(devtest.data_path("crypto/" + name)) as f:
        for line in f:
            line = line.strip()
            if line:
                yield json.loads(line)


def _run(name):
    counts = {"valid": 0, "invalid": 0, "unsupported": 0}
    failures = []
    for c in _cases(name):
        sig = binascii.unhexlify(c["sig"])
        msg = binascii.unhexlify(c["msg"])
        try:
            got = "valid" if verify_signature(c["key"], sig, msg) else "invalid"
        except UnsupportedKeyError:
            got = "unsupported"
        if got != c["expect"]:
            failures.append("%s: expected %s, got %s" % (c["name"], c["expect"], got))
        counts[c["expect"]] += 1
    assert not failures, failures
    return counts


def test_ed25519_vectors():
    counts = _run("ed25519.jsonl")
    assert counts["valid"] >= 10 and counts["invalid"] >= 10 and counts["unsupported"] >= 5, counts


def test_ecdsa_p256_vectors():
    counts = _run("ecdsa.jsonl")
    assert counts["valid"] >= 10 and counts["invalid"] >= 15 and counts["unsupported"] >= 5, counts


def test_rsa_pss_vectors():
    counts = _run("rsa.jsonl")
    assert counts["valid"] >= 10 and counts["invalid"] >= 10 and counts["unsupported"] >= 4, counts


def _first_valid(name):
    for c in _cases(name):
        if c["expect"] == "valid" and c["name"].startswith("good"):
            return c["key"], binascii.unhexlify(c["sig"]), binascii.unhexlify(c["msg"])
    raise AssertionError("no good case in " + name)


def test_loaded_key_is_reusable_and_every_bit_matters():
    # One parsed key verifies many times; flipping any single byte of the
    # signature of a (small) message is rejected.
    for name in ("ed25519.jsonl", "ecdsa.jsonl"):
        key, sig, msg = _first_valid(name)
        k = load_key(key)
        assert k.verify(sig, msg)
        for i in range(0, len(sig), 7):
            bad = bytearray(sig)
            bad[i] ^= 0x40
            assert not k.verify(bytes(bad), msg), (name, i)
        assert k.verify(sig, msg)


def test_bytes_like_inputs():
    for name in ("ed25519.jsonl", "ecdsa.jsonl", "rsa.jsonl"):
        key, sig, msg = _first_valid(name)
        assert verify_signature(key, bytearray(sig), bytearray(msg)), name
        assert verify_signature(key, memoryview(sig), memoryview(msg)), name
        # A signature that is not bytes at all is simply not a valid signature.
        assert verify_signature(key, binascii.hexlify(sig).decode(), msg) is False
        assert verify_signature(key, None, msg) is False
        # The message must be bytes: a str is a programming error.
        devtest.raises(TypeError, verify_signature, key, sig, "text")


def test_malformed_key_dicts():
    good = {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "00" * 32}}
    bad_keys = [
        None,
        [],
        "ed25519",
        {},
        {"keytype": "ed25519", "scheme": "ed25519"},
        {"keytype": "ed25519", "scheme": "ed25519", "keyval": "x"},
        {"keytype": "ed25519", "scheme": "ed25519", "keyval": {}},
        {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": 5}},
        {"keytype": 1, "scheme": "ed25519", "keyval": {"public": "00" * 32}},
        {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "0" * 100000}},
    ]
    for k in bad_keys:
        devtest.raises(UnsupportedKeyError, verify_signature, k, b"\x00" * 64, b"m")
    # UnsupportedKeyError is a ValueError, so callers may catch either.
    assert issubclass(UnsupportedKeyError, ValueError)
    # 32 zero bytes decode to a point of order 4: refused as a key.
    devtest.raises(UnsupportedKeyError, verify_signature, good, b"\x00" * 64, b"m")
    key, sig, msg = _first_valid("ed25519.jsonl")
    assert verify_signature(key, b"\x00" * 64, msg) is False


def test_der_reader_strictness():
    # (bytes, reason) of Ecdsa-Sig-Value encodings that must be refused.
    bad = [
        b"",
        b"\x30",
        b"\x30\x00",
        b"\x30\x03\x02\x01\x01",
        b"\x30\x06\x02\x01\x01\x02\x01\x01\x00",  # trailing byte
        b"\x30\x80\x02\x01\x01\x02\x01\x01\x00\x00",  # indefinite length
        b"\x30\x81\x06\x02\x01\x01\x02\x01\x01",  # long form for a short length
        b"\x30\x84\x00\x00\x00\x06\x02\x01\x01\x02\x01\x01",  # too many length bytes
        b"\x30\x06\x02\x01\x81\x02\x01\x01",  # negative r
        b"\x30\x07\x02\x02\x00\x01\x02\x01\x01",  # non-minimal r
        b"\x30\x05\x02\x00\x02\x01\x01",  # empty INTEGER
        b"\x30\x06\x04\x01\x01\x02\x01\x01",  # OCTET STRING, not INTEGER
        b"\x1f\x06\x02\x01\x01\x02\x01\x01",  # high tag form
        b"\x30\x06\x02\x05\x01\x02\x01\x01",  # inner length beyond outer
        b"\x30\xff",
    ]
    for b in bad:
        devtest.raises(der.DERError, der.parse_ecdsa_sig, b)
    assert der.parse_ecdsa_sig(b"\x30\x06\x02\x01\x01\x02\x01\x7f") == (1, 127)
    assert der.parse_ecdsa_sig(b"\x30\x07\x02\x02\x00\x80\x02\x01\x01") == (128, 1)


def test_pem_decoder():
    body = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE5PLBdOvfkalCK8uuDhg1C2rF+49R\nHKj5liQDzbzOfbk53Nlg9OQQsYgONGLHtnEFzHqACCLOtgIQ3BFi/i2qqQ=="
    pem = "-----BEGIN PUBLIC KEY-----\n" + body + "\n-----END PUBLIC KEY-----\n"
    raw = der.pem_decode(pem)
    assert len(raw) == 91 and raw[0] == 0x30
    kind, point = der.parse_spki(raw)
    assert kind == "ec-p256" and len(point) == 65 and point[0] == 4
    assert der.pem_decode(pem.replace("\n", "\r\n")) == raw
    bad = [
        "",
        body,
        pem.replace("PUBLIC KEY", "PRIVATE KEY"),
        pem[:-27],
        pem.replace("==", "="),
        pem.replace("==", "==A"),
        pem.replace("MFkw", "MF!w"),
        pem.replace("MFkw", "MFk\u00e9"),
        "-----BEGIN PUBLIC KEY----------END PUBLIC KEY-----",
        "-----BEGIN PUBLIC KEY-----\n====\n-----END PUBLIC KEY-----",
        "-----BEGIN PUBLIC KEY-----\n" + "A" * 9000 + "\n-----END PUBLIC KEY-----",
    ]
    for p in bad:
        devtest.raises(der.DERError, der.pem_decode, p)
    # Valid base64 that is not a SubjectPublicKeyInfo.
    devtest.raises(der.DERError, der.parse_spki, der.pem_decode(
        "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----"))
    devtest.raises(der.DERError, der.parse_spki, raw[:-1])
    devtest.raises(der.DERError, der.parse_spki, raw + b"\x00")


def test_streaming_verify_equals_one_shot():
    # begin(sig) / update(chunk)... / finish() gives the one-shot answer for
    # every case of every scheme, whatever the chunking.
    for name in ("ed25519.jsonl", "ecdsa.jsonl", "rsa.jsonl"):
        n = 0
        for c in _cases(name):
            if c["expect"] == "unsupported":
                continue
            key = load_key(c["key"])
            sig = binascii.unhexlify(c["sig"])
            msg = binascii.unhexlify(c["msg"])
            v = key.begin(sig)
            step = 1 + (n % 5) * 37
            for i in range(0, len(msg), step):
                v.update(msg[i:i + step])
            assert v.finish() is (c["expect"] == "valid"), (name, c["name"])
            n += 1
        assert n >= 20, name


def _first_valid_metadata(name):
    # A good case whose message is the canonical JSON of python-tuf metadata.
    for c in _cases(name):
        if c["expect"] == "valid" and c["msg"].startswith("7b"):  # "{"
            return c["key"], binascii.unhexlify(c["sig"]), binascii.unhexlify(c["msg"])
    raise AssertionError("no metadata case in " + name)


def test_streaming_from_canonical_encoder():
    # Two verifiers (threshold) fed by one canonical-JSON encoding pass of the
    # parsed metadata: the canonical bytes never exist in one piece.
    from updater.crypto.canonjson import encode_canonical

    for name in ("ed25519.jsonl", "ecdsa.jsonl", "rsa.jsonl"):
        k, s, m = _first_valid_metadata(name)
        doc = json.loads(m)
        v1 = load_key(k).begin(s)
        bad = bytearray(s)
        bad[-1] ^= 1
        v2 = load_key(k).begin(bytes(bad))

        def both(b):
            v1.update(b)
            v2.update(b)

        encode_canonical(doc, both)
        assert v1.finish() is True, name
        assert v2.finish() is False, name
