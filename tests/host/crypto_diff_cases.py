"""Cases for the differential test of the device crypto (updater/crypto)
against `cryptography`: at least 1,000 per algorithm, generated once per test
session from a fixed seed and written as JSON Lines for one batch run per
runtime (tests/host/crypto_diff_vm.py).

Every case carries the answer the device must give, taken from cryptography
(OpenSSL) and hashlib. The only places where the project deliberately differs
from OpenSSL are rules on the *public key* (updater/crypto/README.md): an
ed25519 key that is not a strictly encoded curve point or has small order,
and a P-256 key cryptography cannot load, is "unsupported"; the signature
check itself (cofactorless, S < L, canonical R, high S valid for ECDSA) must
agree with OpenSSL exactly.
"""
from __future__ import annotations

import base64
import hashlib
import json
import random
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from updater.crypto import ed25519 as dev_ed  # group arithmetic to BUILD inputs only

SEED = 18
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
P256 = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N256 = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
# The canonical encodings of the 8 points of small order (libsodium's list).
SMALL_ORDER = [bytes.fromhex(h) for h in (
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
)]
SPKI_UNCOMPRESSED = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")
SPKI_COMPRESSED = bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200")


def ed_key_decodes(raw: bytes) -> bool:
    """RFC 8032 5.1.3 strict decoding (host reference): y < p, a square root
    for x exists, not (x = 0 and sign bit)."""
    if len(raw) != 32:
        return False
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    if y >= P:
        return False
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x2 = u * pow(v, P - 2, P) % P
    if x2 == 0:
        return not raw[31] >> 7
    return pow(x2, (P - 1) // 2, P) == 1


def _ed_expect(raw: bytes, sig: bytes, msg: bytes) -> str:
    if not ed_key_decodes(raw) or raw in SMALL_ORDER:
        return "unsupported"
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(sig, msg)
    except (InvalidSignature, ValueError):
        return "invalid"
    return "valid"


def _ed_case(raw: bytes, sig: bytes, msg: bytes, kind: str, public_hex: str | None = None) -> dict:
    key = {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": raw.hex() if public_hex is None else public_hex}}
    expect = "unsupported" if public_hex is not None else _ed_expect(raw, sig, msg)
    return {"alg": "ed25519", "kind": kind, "key": key, "sig": sig.hex(), "msg": msg.hex(), "expect": expect}


def _flip(data: bytes, rng: random.Random, lo: int = 0, hi: int | None = None) -> bytes:
    out = bytearray(data)
    i = rng.randrange(lo, len(out) if hi is None else hi)
    out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _scalar_base(s: int) -> bytes:
    return dev_ed.encode_point(dev_ed.double_scalarmult(s, 0, (0, 1, 1, 0)))


def _mixed_order_case(rng: random.Random, msg: bytes) -> dict:
    # A' = A + T (T of order 8) and S = r + k*a, k = H(R || A' || M): valid
    # under the cofactored equation always, under the cofactorless one (the
    # project's and OpenSSL's) only when 8 divides k.
    seed = rng.randbytes(32)
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    pub = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    t = dev_ed.decode_point(SMALL_ORDER[4])
    a2 = dev_ed.encode_point(dev_ed._add_cached(dev_ed.decode_point(pub), dev_ed._cached(t)))  # noqa: SLF001
    r = rng.randrange(1, L)
    big_r = _scalar_base(r)
    k = int.from_bytes(hashlib.sha512(big_r + a2 + msg).digest(), "little") % L
    s = (r + k * a) % L
    return _ed_case(a2, big_r + s.to_bytes(32, "little"), msg, "mixed-order key")


def ed25519_cases(rng: random.Random, n_keys: int = 64) -> list[dict]:
    out = []
    for _ in range(n_keys):
        sk = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        raw = sk.public_key().public_bytes_raw()
        msg = rng.randbytes(rng.randrange(0, 300))
        sig = sk.sign(msg)
        s = int.from_bytes(sig[32:], "little")
        out.append(_ed_case(raw, sig, msg, "valid"))
        for _ in range(3):
            out.append(_ed_case(raw, _flip(sig, rng), msg, "sig bit (R or S)"))
        out.append(_ed_case(raw, _flip(sig, rng, 32, 64), msg, "sig bit in S"))
        out.append(_ed_case(raw, sig, _flip(msg, rng) if msg else b"x", "message bit"))
        for _ in range(2):
            out.append(_ed_case(_flip(raw, rng), sig, msg, "key bit"))
        out.append(_ed_case(raw, sig[:32] + (s + L).to_bytes(32, "little"), msg, "S + L"))
        big = s + L * rng.randrange(2, (2**256 - 1 - s) // L)
        out.append(_ed_case(raw, sig[:32] + big.to_bytes(32, "little"), msg, "S + k L"))
        y = rng.randrange(P, 2**255)
        nc_r = (y | (rng.randrange(2) << 255)).to_bytes(32, "little")
        out.append(_ed_case(raw, nc_r + sig[32:], msg, "non-canonical R"))
        out.append(_ed_case(nc_r, sig, msg, "non-canonical key"))
        cut = rng.choice([0, 1, 31, 32, 63, 65, 96])
        out.append(_ed_case(raw, (sig + sig)[:cut], msg, "signature length %d" % cut))
        klen = rng.choice([0, 31, 33, 64])
        out.append(_ed_case(raw, sig, msg, "key length %d" % klen, public_hex=(raw * 3)[:klen].hex()))
        out.append(_mixed_order_case(rng, msg))
        other = rng.randbytes(64)
        out.append(_ed_case(raw, other, msg, "random signature"))
    for so in SMALL_ORDER:
        for _ in range(3):
            s = rng.randrange(L)
            msg = rng.randbytes(rng.randrange(0, 64))
            # With the identity key OpenSSL accepts R = [S]B for any message.
            out.append(_ed_case(so, _scalar_base(s) + s.to_bytes(32, "little"), msg, "small-order key"))
    return out


def _spki_pem(point: bytes) -> str:
    prefix = SPKI_COMPRESSED if len(point) == 33 else SPKI_UNCOMPRESSED
    der = prefix + point
    b64 = base64.b64encode(der).decode()
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64)) + "\n-----END PUBLIC KEY-----\n"


def _ec_expect(point: bytes, sig: bytes, msg: bytes) -> str:
    try:
        pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        return "unsupported"
    try:
        pub.verify(sig, msg, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "invalid"
    return "valid"


def _ec_case(point: bytes, sig: bytes, msg: bytes, kind: str) -> dict:
    key = {"keytype": "ecdsa", "scheme": "ecdsa-sha2-nistp256", "keyval": {"public": _spki_pem(point)}}
    return {"alg": "ecdsa", "kind": kind, "key": key, "sig": sig.hex(), "msg": msg.hex(),
            "expect": _ec_expect(point, sig, msg)}


def ecdsa_cases(rng: random.Random, n_keys: int = 60) -> list[dict]:
    out = []
    for i in range(n_keys):
        sk = ec.derive_private_key(rng.randrange(1, N256), ec.SECP256R1())
        fmt = serialization.PublicFormat.CompressedPoint if i % 3 == 0 else serialization.PublicFormat.UncompressedPoint
        point = sk.public_key().public_bytes(serialization.Encoding.X962, fmt)
        msg = rng.randbytes(rng.randrange(0, 300))
        sig = sk.sign(msg, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(sig)
        out.append(_ec_case(point, sig, msg, "valid"))
        for _ in range(3):
            out.append(_ec_case(point, _flip(sig, rng), msg, "sig bit"))
        out.append(_ec_case(point, sig, _flip(msg, rng) if msg else b"x", "message bit"))
        for _ in range(2):
            out.append(_ec_case(_flip(point, rng), sig, msg, "key bit"))
        out.append(_ec_case(point, encode_dss_signature(r, N256 - s), msg, "high S"))
        out.append(_ec_case(point, encode_dss_signature(r, s + N256), msg, "s + n"))
        out.append(_ec_case(point, encode_dss_signature(r + N256, s), msg, "r + n"))
        out.append(_ec_case(point, encode_dss_signature(rng.choice([0, r]), rng.choice([0, N256])), msg, "r or s 0/n"))
        out.append(_ec_case(point, sig[:rng.randrange(len(sig))], msg, "truncated signature"))
        out.append(_ec_case(point, sig + b"\0", msg, "trailing byte"))
        out.append(_ec_case(point, encode_dss_signature(rng.randrange(1, N256), rng.randrange(1, N256)), msg, "random r, s"))
        out.append(_ec_case(point[:-1], sig, msg, "key length"))
        out.append(_ec_case(b"\x00", sig, msg, "point at infinity"))
        nc = bytes([point[0]]) + rng.randrange(P256, 2**256).to_bytes(32, "big") + point[33:]
        out.append(_ec_case(nc, sig, msg, "coordinate >= p"))
    return out


def sha512_cases(rng: random.Random, n: int = 1000) -> list[dict]:
    out = []
    for i in range(n):
        length = i if i < 300 else rng.randrange(0, 2000)
        msg = rng.randbytes(length)
        cuts = sorted(rng.randrange(length + 1) for _ in range(rng.randrange(4)))
        out.append({"alg": "sha512", "kind": "length %d" % length, "msg": msg.hex(), "cuts": cuts,
                    "expect": hashlib.sha512(msg).hexdigest()})
    return out


def write_cases(path: Path) -> list[dict]:
    rng = random.Random(SEED)
    cases = ed25519_cases(rng) + ecdsa_cases(rng) + sha512_cases(rng)
    with path.open("w") as f:
        for c in cases:
            f.write(json.dumps(c, separators=(",", ":")) + "\n")
    return cases
