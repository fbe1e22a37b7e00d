"""Differential test of the device signature verifiers against `cryptography`.

1,000+ generated cases per algorithm (Ed25519, ECDSA P-256): valid
signatures; flipped bits in signature, public key and message; S >= L (and
s >= n, r >= n); non-canonical point encodings; small-order Ed25519 keys;
wrong lengths. Every case runs through `updater.crypto.verify` on CPython (in
this process) and on the MicroPython VM (256 KiB heap) twice: with the viper
SHA-512 and with `sha512.use_viper(False)` forcing the pure fallback.

Expected answers come from `cryptography` (OpenSSL). The documented
deviations are decided by an independent reference (RFC 8032 section 6's
affine arithmetic, written out below, not the device code): an Ed25519 public
key that is not a canonical encoding of a curve point, or is of small order,
is refused by the device ("unsupported") whatever OpenSSL says.
"""
from __future__ import annotations

import base64
import json
import random
import sys
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from host_tools import mpvm
from updater.crypto.verify import UnsupportedKeyError, load_key

REPO = Path(__file__).resolve().parents[2]
N_CASES = 1000

# ------------------------------------------------------------ RFC 8032 reference

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _ref_add(a, b):
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, _P - 2, _P) % _P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P
    return (x3, y3)


def _ref_decode(s: bytes):
    """RFC 8032 5.1.3 strict decoding -> affine (x, y), or None."""
    if len(s) != 32:
        return None
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        if sign:
            return None
        return (0, y)
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if x & 1 != sign:
        x = _P - x
    return (x, y)


def _ref_encode(pt) -> bytes:
    x, y = pt
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _ref_small_order(pt) -> bool:
    q = pt
    for _ in range(3):
        q = _ref_add(q, q)
    return q == (0, 1)


def _small_order_points() -> list[bytes]:
    """The 8 points of order dividing 8, found by decoding candidates with
    the reference decoder (y in {1, -1, 0} and the two order-8 y's)."""
    out = set()
    # Seeds: y = 1, -1, 0 and one order-8 point (libsodium's blocklist);
    # the torsion group is then closed under addition and must have 8 points.
    seeds = [(1).to_bytes(32, "little"), (_P - 1).to_bytes(32, "little"), bytes(32),
             bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")]
    pts = [p for p in (_ref_decode(s) for s in seeds) if p is not None]
    assert all(_ref_small_order(p) for p in pts)
    group = {(0, 1)}
    frontier = list(pts)
    while frontier:
        a = frontier.pop()
        if a in group:
            continue
        group.add(a)
        for b in list(group):
            frontier.append(_ref_add(a, b))
    assert len(group) == 8
    for p in group:
        out.add(_ref_encode(p))
    return sorted(out)


SMALL_ORDER = _small_order_points()

# ------------------------------------------------------------ case generation


def _flip(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    if not b:
        return b"\x00"
    i = rng.randrange(len(b) * 8)
    b[i >> 3] ^= 1 << (i & 7)
    return bytes(b)


def _msg(rng: random.Random) -> bytes:
    n = rng.choice((0, 1, 111, 112, 127, 128, 129, 239, 240, 255, 256, 257)) if rng.random() < 0.3 \
        else (rng.randrange(4000) if rng.random() < 0.03 else rng.randrange(400))
    return rng.randbytes(n)


def _ed_expected(pub: bytes, sig: bytes, msg: bytes) -> str:
    pt = _ref_decode(pub)
    if pt is None or _ref_small_order(pt):
        return "unsupported"
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
    except (InvalidSignature, ValueError):
        return "invalid"
    return "valid"


def ed25519_cases(n: int = N_CASES) -> list[dict]:
    rng = random.Random(18_25519)
    keys = [Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)) for _ in range(6)]
    out = []
    for i in range(n):
        kind = i % 10
        sk = keys[i % len(keys)]
        pub = sk.public_key().public_bytes_raw()
        msg = _msg(rng)
        sig = sk.sign(msg)
        if kind == 3:
            sig = _flip(sig, rng)
        elif kind == 4:
            msg = _flip(msg, rng)
        elif kind == 5:
            pub = _flip(pub, rng)
        elif kind == 6:  # S >= L
            s = int.from_bytes(sig[32:], "little")
            s2 = s + _L * rng.randrange(1, 8) if rng.random() < 0.7 else rng.randrange(_L, 2**256)
            if s2 >= 2**256:
                s2 = _L + rng.randrange(2**128)
            sig = sig[:32] + s2.to_bytes(32, "little")
        elif kind == 7:  # non-canonical encodings: y >= p in R or in A, x = 0 with the sign bit
            which = rng.randrange(4)
            y = int.from_bytes(pub, "little") & ((1 << 255) - 1)
            if which == 0:
                sig = (_P + rng.randrange(19)).to_bytes(32, "little") + sig[32:]
            elif which == 1:
                r_y = int.from_bytes(sig[:32], "little") & ((1 << 255) - 1)
                if r_y < 19:  # y + p still fits in 255 bits: the non-canonical twin of R
                    sig = (r_y + _P).to_bytes(32, "little") + sig[32:]
                else:
                    sig = ((_P + rng.randrange(19)) | (rng.randrange(2) << 255)).to_bytes(32, "little") + sig[32:]
            elif which == 2:
                pub = ((_P + rng.randrange(19)) | (rng.randrange(2) << 255)).to_bytes(32, "little")
            else:
                pub = (1 | (1 << 255)).to_bytes(32, "little") if y & 1 else ((_P - 1) | (1 << 255)).to_bytes(32, "little")
        elif kind == 8:  # small-order keys, with a random or a forged signature
            pub = rng.choice(SMALL_ORDER)
            if rng.random() < 0.5:
                s = rng.randrange(_L)
                # R = [S]B: what OpenSSL accepts for the identity key.
                sig = _ref_encode(_ref_mul_base(s)) + s.to_bytes(32, "little")
            else:
                sig = rng.randbytes(64)
        elif kind == 9:  # wrong lengths
            if rng.random() < 0.5:
                sig = sig[:rng.choice((0, 1, 31, 32, 63))] if rng.random() < 0.5 else sig + rng.randbytes(rng.choice((1, 64)))
            else:
                pub = pub[:31] if rng.random() < 0.5 else pub + b"\x00"
        key = {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": pub.hex()}}
        exp = _ed_expected(pub, sig, msg) if len(pub) == 32 else "unsupported"
        out.append({"key": key, "sig": sig.hex(), "msg": msg.hex(), "exp": exp})
    return out


_B = _ref_decode((4 * pow(5, _P - 2, _P) % _P).to_bytes(32, "little"))


def _ref_mul_base(s: int):
    q, r = _B, (0, 1)
    while s:
        if s & 1:
            r = _ref_add(r, q)
        q = _ref_add(q, q)
        s >>= 1
    return r


def _spki_pem(point: bytes) -> str:
    # SubjectPublicKeyInfo for id-ecPublicKey / prime256v1 around a raw point.
    alg = bytes.fromhex("301306072a8648ce3d020106082a8648ce3d030107")
    bits = b"\x03" + bytes([len(point) + 1]) + b"\x00" + point
    body = alg + bits
    der = b"\x30" + bytes([len(body)]) + body
    b64 = base64.b64encode(der).decode()
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64)) + "\n-----END PUBLIC KEY-----\n"


def _ec_expected(point: bytes, sig: bytes, msg: bytes) -> str:
    try:
        pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        return "unsupported"
    try:
        pub.verify(sig, msg, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return "invalid"
    return "valid"


def ecdsa_cases(n: int = N_CASES) -> list[dict]:
    rng = random.Random(18_256)
    keys = [ec.derive_private_key(rng.randrange(1, _N), ec.SECP256R1()) for _ in range(6)]
    keys += [ec.derive_private_key(d, ec.SECP256R1()) for d in (1, 2, _N - 1)]
    out = []
    for i in range(n):
        kind = i % 10
        sk = keys[i % len(keys)]
        fmt = serialization.PublicFormat.CompressedPoint if i % 7 == 0 else serialization.PublicFormat.UncompressedPoint
        point = sk.public_key().public_bytes(serialization.Encoding.X962, fmt)
        msg = _msg(rng)
        sig = sk.sign(msg, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(sig)
        if kind == 3:
            sig = encode_dss_signature(r ^ (1 << rng.randrange(256)), s) if rng.random() < 0.5 \
                else encode_dss_signature(r, s ^ (1 << rng.randrange(256)))
        elif kind == 4:
            msg = _flip(msg, rng)
        elif kind == 5:
            point = _flip(point, rng)
        elif kind == 6:  # s >= n or r >= n, or the high-S twin (valid in ECDSA)
            c = rng.randrange(3)
            sig = encode_dss_signature(r, s + _N) if c == 0 else (
                encode_dss_signature(r + _N, s) if c == 1 else encode_dss_signature(r, _N - s))
        elif kind == 7:  # non-canonical / off-curve points: x or y >= p, y + 1
            p = 2**256 - 2**224 + 2**192 + 2**96 - 1
            x = int.from_bytes(point[1:33], "big")
            if len(point) == 65 and rng.random() < 0.5:
                y = int.from_bytes(point[33:], "big")
                y2 = y + p if y + p < 2**256 else (y + 1) % 2**256
                point = b"\x04" + point[1:33] + y2.to_bytes(32, "big")
            elif x + p < 2**256:
                point = point[:1] + (x + p).to_bytes(32, "big") + point[33:]
            else:
                point = point[:1] + ((x + 1) % 2**256).to_bytes(32, "big") + point[33:]
        elif kind == 8:  # zero / n / garbage values, DER with trailing bytes
            c = rng.randrange(4)
            sig = (encode_dss_signature(0, s), encode_dss_signature(r, 0), encode_dss_signature(_N, s),
                   sig + b"\x00")[c]
        elif kind == 9:  # wrong lengths
            c = rng.randrange(3)
            if c == 0:
                sig = sig[:rng.randrange(len(sig))]
            elif c == 1:
                sig = rng.randbytes(rng.choice((64, 72, 100)))
            else:
                point = point[:-1]
        key = {"keytype": "ecdsa", "scheme": "ecdsa-sha2-nistp256", "keyval": {"public": _spki_pem(point)}}
        out.append({"key": key, "sig": sig.hex(), "msg": msg.hex(), "exp": _ec_expected(point, sig, msg)})
    return out


def _ours(case: dict) -> str:
    try:
        k = load_key(case["key"])
    except UnsupportedKeyError:
        return "unsupported"
    return "valid" if k.verify(bytes.fromhex(case["sig"]), bytes.fromhex(case["msg"])) else "invalid"


@pytest.fixture(scope="module")
def cases() -> dict[str, list[dict]]:
    return {"ed25519": ed25519_cases(), "ecdsa": ecdsa_cases()}


def test_case_mix(cases):
    for name, cs in cases.items():
        assert len(cs) >= N_CASES
        kinds = {c["exp"] for c in cs}
        assert kinds == {"valid", "invalid", "unsupported"}, (name, kinds)
        assert sum(c["exp"] == "valid" for c in cs) >= N_CASES // 5


@pytest.mark.parametrize("alg", ["ed25519", "ecdsa"])
def test_cpython_agrees(cases, alg):
    bad = [(i, c["exp"], _ours(c)) for i, c in enumerate(cases[alg]) if _ours(c) != c["exp"]]
    assert not bad, bad[:5]


VM_SCRIPT = r"""
import sys, json, binascii, gc
from updater.crypto import sha512
from updater.crypto.verify import load_key, UnsupportedKeyError
mode = sys.argv[2]
on = sha512.use_viper(mode == "viper")
assert on == (mode == "viper"), "viper requested but not available"
out = []
with open(sys.argv[1]) as f:
    for line in f:
        c = json.loads(line)
        try:
            k = load_key(c["key"])
        except UnsupportedKeyError:
            out.append("u")
            continue
        ok = k.verify(binascii.unhexlify(c["sig"]), binascii.unhexlify(c["msg"]))
        out.append("v" if ok else "i")
        c = None
print("@@RESULT " + "".join(out))
"""

_CODE = {"valid": "v", "invalid": "i", "unsupported": "u"}


@pytest.mark.parametrize("alg,mode", [("ed25519", "viper"), ("ed25519", "pure"), ("ecdsa", "viper")])
def test_micropython_agrees(cases, alg, mode, tmp_path):
    data = tmp_path / "cases.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in cases[alg]))
    script = tmp_path / "diff_vm.py"
    script.write_text(VM_SCRIPT)
    proc = mpvm.run_script(script, str(data), mode, paths=[REPO], heap="256k", timeout=300, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@RESULT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    got = lines[-1][len("@@RESULT "):]
    want = "".join(_CODE[c["exp"]] for c in cases[alg])
    bad = [(i, want[i], got[i]) for i in range(len(want)) if got[i] != want[i]]
    assert len(got) == len(want) and not bad, bad[:5]


if __name__ == "__main__":  # regenerate nothing; print the mix
    cs = {"ed25519": ed25519_cases(), "ecdsa": ecdsa_cases()}
    for k, v in cs.items():
        print(k, {e: sum(c["exp"] == e for c in v) for e in ("valid", "invalid", "unsupported")})
    sys.exit(0)
