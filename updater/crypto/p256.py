# ECDSA verification on NIST P-256 with SHA-256 (FIPS 186-4 / SEC1 4.1.4),
# pure Python on big integers, for MicroPython and CPython.
#
# Jacobian coordinates (x = X/Z^2, y = Y/Z^3), Z = 0 is the point at
# infinity; doubling uses a = -3 (dbl-2001-b). u1*G + u2*Q is one chain of
# 128 doublings over width-w NAF digits of four half-length scalars
# (u = lo + 2^128 hi; a key's first verification uses u1, u2 whole over 256
# doublings): affine odd multiples of G and [2^128]G (1..15, built once per
# process on first use) and of Q (1..7, at key load) and [2^128]Q (at the
# key's second verification), packed as bytes (scalar.pack: 1 KB for G,
# 256 + 256 bytes per key), each normalised with one shared
# inversion (Montgomery's trick), so every addition is a mixed Jacobian +
# affine one; a negative digit adds (x, p - y). Inverses use Euclid's
# algorithm. The final x-coordinate check avoids an inversion:
# x(R) == r  <=>  X == r * Z^2 (mod p), also trying r + n.
from updater.crypto.scalar import inverse, pack, row, wnaf
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
    # Montgomery batch inversion: one pow() for all Z. Points at infinity are
    # returned as None.
    p = P
    prefix = []
    acc = 1
    for pt in pts:
        prefix.append(acc)
        if pt[2]:
            acc = acc * pt[2] % p
    inv = inverse(acc, p)
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


_HALF = 128  # scalars (< 2^256) are split as lo + 2^128 * hi
_W_G = 5  # wNAF width for u1 (base point G)
_W_Q = 4  # wNAF width for u2 (the key)
_G_TABLES = []  # affine odd multiples of G and of [2^128]G


def _odd_multiples(bases, n):
    # For each Jacobian base point Q: affine [Q, 3Q, 5Q, ...] (n entries),
    # packed; one inversion for all.
    pts = []
    for base in bases:
        pts.append(base)
        q2 = _to_affine_many([_double(base)])[0]
        for i in range(1, n):
            pts.append(_add_affine(pts[-1], q2[0], q2[1]))
    aff = _to_affine_many(pts)
    return [pack(aff[i:i + n]) for i in range(0, len(aff), n)]


def _shifted(x, y):
    pt = (x, y, 1)
    for _ in range(_HALF):
        pt = _double(pt)
    return pt


def point_table(x, y, shift=False):
    """Per-key table: affine odd multiples (< 2^(_W_Q-1)) of Q = (x, y), or
    of [2^128]Q with shift (128 doublings: built only for a key that is used
    again, see P256Key)."""
    return _odd_multiples([_shifted(x, y) if shift else (x, y, 1)], 1 << (_W_Q - 2))[0]


def _mul(u1, u2, qtables):
    # u1*G + u2*Q as a Jacobian point, qtables = [point_table(Q)] or, faster,
    # [point_table(Q), point_table(Q, True)]: then both scalars are split in
    # 128-bit halves and four scalars share one chain of 128 doublings.
    if not _G_TABLES:
        _G_TABLES.extend(_odd_multiples([(GX, GY, 1)], 1 << (_W_G - 2)))
    if len(qtables) == 2:
        if len(_G_TABLES) == 1:  # [2^128]G: only once some key is reused
            _G_TABLES.extend(_odd_multiples([_shifted(GX, GY)], 1 << (_W_G - 2)))
        m = (1 << _HALF) - 1
        bits = _HALF
        terms = (
            (wnaf(u1 & m, _W_G, bits), _G_TABLES[0]),
            (wnaf(u1 >> _HALF, _W_G, bits), _G_TABLES[1]),
            (wnaf(u2 & m, _W_Q, bits), qtables[0]),
            (wnaf(u2 >> _HALF, _W_Q, bits), qtables[1]),
        )
    else:
        bits = 256
        terms = ((wnaf(u1, _W_G, bits), _G_TABLES[0]), (wnaf(u2, _W_Q, bits), qtables[0]))
    p = P
    r = _INF
    for i in range(bits + 7, -1, -1):
        r = _double(r)
        for digits, table in terms:
            d = digits[i] - 128
            if d > 0:
                t = row(table, d >> 1, 2)
                r = _add_affine(r, t[0], t[1])
            elif d < 0:
                t = row(table, (-d) >> 1, 2)
                r = _add_affine(r, t[0], p - t[1])
    return r


def double_scalarmult(u1, u2, qx, qy):
    """u1*G + u2*Q (u1, u2 < 2^256) as a Jacobian point."""
    return _mul(u1, u2, [point_table(qx, qy)])


class P256Key:
    """A validated P-256 public key; verify(signature_der, message) or the
    streaming begin(signature_der) -> update(data)... -> finish()."""

    def __init__(self, sec1_point):
        self.x, self.y = decode_point(sec1_point)
        self._tables = [point_table(self.x, self.y)]
        self._used = False

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
        w = inverse(s, n)
        u1 = e * w % n
        u2 = r * w % n
        if self._used and len(self._tables) == 1:
            # A key used again: the [2^128]Q table halves the doubling chain.
            self._tables.append(point_table(self.x, self.y, True))
        self._used = True
        X, Y, Z = _mul(u1, u2, self._tables)
        if Z == 0:
            return False
        p = P
        zz = Z * Z % p
        if X == r * zz % p:
            return True
        # x(R) in [n, p) reduces to r = x - n.
        rn = r + n
        return rn < p and X == rn * zz % p
