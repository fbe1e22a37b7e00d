# ECDSA verification on NIST P-256 with SHA-256 (FIPS 186-4 / SEC1 4.1.4),
# pure Python on big integers, for MicroPython and CPython.
#
# Jacobian coordinates (x = X/Z^2, y = Y/Z^3), Z = 0 is the point at
# infinity; doubling uses a = -3 (dbl-2001-b). u1*G + u2*Q is computed with
# Straus/Shamir and a 2-bit window over both scalars: a table of the 15
# combinations i*G + j*Q, normalised to affine with one shared inversion
# (Montgomery's trick, Euclid not pow) so every addition in the main loop is a mixed
# Jacobian + affine addition. The final x-coordinate check avoids an
# inversion: x(R) == r  <=>  X == r * Z^2 (mod p), also trying r + n.
from updater.crypto import inv_mod
from updater.crypto.streaming import Sha256Verify

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5

_INF = (1, 1, 0)


class P256PointError(ValueError):
    """Bytes that are not a valid SEC1 encoding of a P-256 point."""


def on_curve(x, y):
    p = P
    return (y * y - (x * x * x - 3 * x + B)) % p == 0


def decode_point(data):
    """SEC1 uncompressed (04||X||Y) or compressed (02/03||X) -> (x, y)."""
    data = bytes(data)
    p = P
    if len(data) == 65 and data[0] == 4:
        x = int.from_bytes(data[1:33], "big")
        y = int.from_bytes(data[33:], "big")
        if x >= p or y >= p or not on_curve(x, y):
            raise P256PointError("point not on P-256")
        return x, y
    if len(data) == 33 and data[0] in (2, 3):
        x = int.from_bytes(data[1:], "big")
        if x >= p:
            raise P256PointError("x out of range")
        rhs = (x * x * x - 3 * x + B) % p
        y = pow(rhs, (p + 1) // 4, p)  # p = 3 mod 4
        if y * y % p != rhs:
            raise P256PointError("point not on P-256")
        if (y & 1) != (data[0] & 1):
            y = p - y
        return x, y
    raise P256PointError("unsupported point encoding")


def _double(pt):
    X1, Y1, Z1 = pt
    if Z1 == 0 or Y1 == 0:
        return _INF
    p = P
    delta = Z1 * Z1 % p
    gamma = Y1 * Y1 % p
    beta = X1 * gamma % p
    alpha = 3 * (X1 - delta) * (X1 + delta) % p
    X3 = (alpha * alpha - 8 * beta) % p
    t = Y1 + Z1
    Z3 = (t * t - gamma - delta) % p
    Y3 = (alpha * (4 * beta - X3) - 8 * gamma * gamma) % p
    return (X3, Y3, Z3)


def _add_affine(pt, x2, y2):
    # madd-2004-hmv: Jacobian pt + affine (x2, y2), with the special cases
    # (pt at infinity, pt == Q, pt == -Q) handled.
    X1, Y1, Z1 = pt
    if Z1 == 0:
        return (x2, y2, 1)
    p = P
    z1z1 = Z1 * Z1 % p
    u2 = x2 * z1z1 % p
    s2 = y2 * Z1 % p * z1z1 % p
    h = (u2 - X1) % p
    r = (s2 - Y1) % p
    if h == 0:
        if r == 0:
            return _double(pt)
        return _INF
    hh = h * h % p
    hhh = h * hh % p
    v = X1 * hh % p
    X3 = (r * r - hhh - 2 * v) % p
    Y3 = (r * (v - X3) - Y1 * hhh) % p
    Z3 = Z1 * h % p
    return (X3, Y3, Z3)


def _to_affine_many(pts):
    # Montgomery batch inversion: one inversion for all Z. Points at infinity are
    # returned as None.
    p = P
    prefix = []
    acc = 1
    for pt in pts:
        prefix.append(acc)
        if pt[2]:
            acc = acc * pt[2] % p
    inv = inv_mod(acc, p)
    out = [None] * len(pts)
    for i in range(len(pts) - 1, -1, -1):
        X, Y, Z = pts[i]
        if Z == 0:
            continue
        zi = inv * prefix[i] % p  # 1/Z_i
        inv = inv * Z % p
        zi2 = zi * zi % p
        out[i] = (X * zi2 % p, Y * zi2 % p * zi % p)
    return out


_G_MULT = []  # [(x, y) of G, 2G, 3G], filled on first use


def _g_multiples():
    if not _G_MULT:
        g2 = _double((GX, GY, 1))
        g3 = _add_affine(g2, GX, GY)
        a = _to_affine_many([g2, g3])
        _G_MULT.append((GX, GY))
        _G_MULT.append(a[0])
        _G_MULT.append(a[1])
    return _G_MULT


def double_scalarmult(u1, u2, qx, qy):
    """u1*G + u2*Q (u1, u2 < 2^256) as a Jacobian point."""
    gm = _g_multiples()
    q1 = (qx, qy, 1)
    q2 = _double(q1)
    q3 = _add_affine(q2, qx, qy)
    jac = [q1, q2, q3]
    for i in range(3):
        gx, gy = gm[i]
        for j in range(3):
            jac.append(_add_affine(jac[j], gx, gy))
    aff = _to_affine_many(jac)
    # table[4*i + j] = affine(i*G + j*Q) or None for infinity / unused.
    table = [None] * 16
    for j in range(1, 4):
        table[j] = aff[j - 1]
    for i in range(1, 4):
        table[4 * i] = gm[i - 1]
        for j in range(1, 4):
            table[4 * i + j] = aff[3 * i + j - 1]
    r = _INF
    for shift in range(254, -2, -2):
        r = _double(_double(r))
        idx = (((u1 >> shift) & 3) << 2) | ((u2 >> shift) & 3)
        if idx:
            t = table[idx]
            if t is not None:
                r = _add_affine(r, t[0], t[1])
    return r


class P256Key:
    """A validated P-256 public key; verify(signature_der, message) or the
    streaming begin(signature_der) -> update(data)... -> finish()."""

    def __init__(self, sec1_point):
        self.x, self.y = decode_point(sec1_point)

    def begin(self, signature):
        return Sha256Verify(self, signature)

    def verify(self, signature, message):
        v = Sha256Verify(self, signature)
        v.update(message)
        return v.finish()

    def verify_digest(self, signature, digest):
        """ECDSA check against a SHA-256 digest of the message."""
        from updater.crypto import der

        # A DER P-256 signature is at most 72 bytes; refuse big blobs early.
        if len(signature) > 80:
            return False
        try:
            r, s = der.parse_ecdsa_sig(bytes(signature))
        except der.DERError:
            return False
        n = N
        if not (0 < r < n and 0 < s < n):
            return False
        e = int.from_bytes(digest, "big")
        w = inv_mod(s, n)
        u1 = e * w % n
        u2 = r * w % n
        X, Y, Z = double_scalarmult(u1, u2, self.x, self.y)
        if Z == 0:
            return False
        p = P
        zz = Z * Z % p
        if X == r * zz % p:
            return True
        # x(R) in [n, p) reduces to r = x - n.
        rn = r + n
        return rn < p and X == rn * zz % p
