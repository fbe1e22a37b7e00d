# Console crypto on both runtimes: HMAC-SHA256 (RFC 4231), PBKDF2-HMAC-SHA256
# (RFC 7914 section 11 and the widely published "password"/"salt" vectors),
# HOTP (RFC 4226 appendix D) and TOTP SHA-1 (RFC 6238 appendix B).
import binascii

import devtest
from agent.console import auth as mac
from agent.console import auth as totp

H = binascii.unhexlify


def test_rfc4231_hmac_sha256():
    cases = [
        (b"\x0b" * 20, b"Hi There",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (b"Jefe", b"what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        (b"\xaa" * 20, b"\xdd" * 50,
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        (bytes(range(1, 26)), b"\xcd" * 50,
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
        (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    ]
    for key, msg, want in cases:
        assert binascii.hexlify(mac.hmac("sha256", key, msg)).decode() == want


def test_pbkdf2_sha256_vectors():
    assert mac.pbkdf2_sha256(b"password", b"salt", 1) == H(
        "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b")
    assert mac.pbkdf2_sha256(b"password", b"salt", 2) == H(
        "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43")
    assert mac.pbkdf2_sha256(b"password", b"salt", 4096) == H(
        "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a")
    # RFC 7914 section 11: 64 bytes = two blocks.
    assert mac.pbkdf2_sha256(b"passwd", b"salt", 1, 64) == H(
        "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783")
    devtest.raises(ValueError, mac.pbkdf2_sha256, b"p", b"s", 0)


def test_hotp_rfc4226():
    want = ["755224", "287082", "359152", "969429", "338314",
            "254676", "287922", "162583", "399871", "520489"]
    for i in range(10):
        assert totp.hotp(b"12345678901234567890", i) == want[i]


def test_totp_rfc6238_sha1():
    cases = [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
             (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130")]
    for t, code in cases:
        assert totp.at(b"12345678901234567890", t, 8) == code


def test_totp_window_and_replay():
    key = b"12345678901234567890"
    now = 1800000015  # step 60000000, 15 s into it
    step = now // 30
    for d in (-1, 0, 1):
        assert totp.verify_totp(key, totp.hotp(key, step + d), now) == step + d
    for d in (-2, 2):
        assert totp.verify_totp(key, totp.hotp(key, step + d), now) is None
    code = totp.hotp(key, step)
    assert totp.verify_totp(key, code, now, last_step=step) is None  # replayed
    assert totp.verify_totp(key, code, now, last_step=step - 1) == step
    assert totp.verify_totp(key, "12345x", now) is None
    assert totp.verify_totp(key, "", now) is None
    devtest.raises(totp.ClockUnset, totp.verify_totp, key, code, 1000)


def test_constant_time_compare():
    assert mac.ct_equal(b"abc", b"abc")
    assert not mac.ct_equal(b"abc", b"abd")
    assert not mac.ct_equal(b"abc", b"abcd")
    assert not mac.ct_equal(b"", b"a")
    assert mac.ct_equal(b"", b"")
