# AES-CCM on the platform block cipher: RFC 3610 packet vectors, golden
# vectors produced by cryptography's AESCCM on the host (gen_golden.py), and
# tamper / parameter checks. Same CCM code on both runtimes.
import binascii
import json

import devtest
from agent.telemetry.aes_ccm import AESCCM, CCMError, InvalidTag

u = binascii.unhexlify


def _load(name):
    with open(devtest.data_path("telemetry/" + name)) as f:
        return json.load(f)


def test_rfc3610_packet_vectors():
    vecs = _load("rfc3610.json")
    assert len(vecs) == 24
    for v in vecs:
        tag = u(v["tag"])
        ccm = AESCCM(u(v["key"]), len(tag))
        out = ccm.encrypt(u(v["nonce"]), u(v["plaintext"]), u(v["aad"]))
        assert out == u(v["ciphertext"]) + tag, "packet vector %d" % v["vector"]
        assert ccm.decrypt(u(v["nonce"]), out, u(v["aad"])) == u(v["plaintext"])


def test_golden_vectors_from_cryptography():
    cases = _load("ccm_golden.json")
    assert len(cases) == 64
    for c in cases:
        ccm = AESCCM(u(c["key"]), 8)
        assert ccm.encrypt(u(c["nonce"]), u(c["plaintext"]), u(c["aad"])) == u(c["sealed"])
        assert ccm.decrypt(u(c["nonce"]), u(c["sealed"]), u(c["aad"])) == u(c["plaintext"])


def test_tamper_table():
    c = _load("ccm_golden.json")[45]
    key, nonce, aad, sealed = u(c["key"]), u(c["nonce"]), u(c["aad"]), u(c["sealed"])
    ccm = AESCCM(key, 8)
    for i in range(len(sealed)):
        bad = bytearray(sealed)
        bad[i] ^= 0x01
        devtest.raises(InvalidTag, ccm.decrypt, nonce, bytes(bad), aad)
    bad_nonce = bytearray(nonce)
    bad_nonce[12] ^= 0x80
    devtest.raises(InvalidTag, ccm.decrypt, bytes(bad_nonce), sealed, aad)
    devtest.raises(InvalidTag, ccm.decrypt, nonce, sealed, aad + b"x")
    devtest.raises(InvalidTag, ccm.decrypt, nonce, sealed[:-1], aad)
    devtest.raises(InvalidTag, ccm.decrypt, nonce, sealed[:7], aad)
    devtest.raises(InvalidTag, AESCCM(bytes(16), 8).decrypt, nonce, sealed, aad)


def test_parameter_errors():
    devtest.raises(CCMError, AESCCM, b"short", 8)
    devtest.raises(CCMError, AESCCM, bytes(16), 7)
    ccm = AESCCM(bytes(16), 8)
    devtest.raises(CCMError, ccm.encrypt, bytes(6), b"x", b"")
    devtest.raises(CCMError, ccm.encrypt, bytes(14), b"x", b"")
    devtest.raises(CCMError, ccm.encrypt, bytes(13), bytes(20000), b"")
    # InvalidTag is a CCMError is a ValueError: one data-error root.
    assert issubclass(InvalidTag, CCMError) and issubclass(CCMError, ValueError)


def test_empty_plaintext_and_block_boundaries():
    ccm = AESCCM(bytes(range(16)), 8)
    n = bytes(13)
    for ln in (0, 1, 15, 16, 17, 31, 32, 33, 64):
        pt = bytes(range(ln))
        out = ccm.encrypt(n, pt, b"hdr")
        assert len(out) == ln + 8
        assert ccm.decrypt(n, out, b"hdr") == pt
