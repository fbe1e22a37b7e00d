# Ed25519 signature verification (RFC 8032 section 5.1.7), pure Python on
# big integers, for MicroPython and CPython.
#
# Cofactorless check, as OpenSSL/cryptography and libsodium do it:
#   S < L, A decodes (canonically) to a curve point (and, like libsodium,
#   not one of small order: refused when the key is loaded),
#   k = SHA-512(R || A || M) mod L,
#   encode([S]B - [k]A) == R   (byte comparison, so a non-canonical R fails).
#
# Points in extended twisted-Edwards coordinates (X:Y:Z:T), x = X/Z,
# y = Y/Z, xy = T/Z (Hisil-Wong-Carter-Dawson 2008, a = -1). The joint
# multiplication [S]B + [k](-A) is Straus/Shamir with a 2-bit window over both
# scalars (table of the 15 combinations i*B + j*(-A), kept in "cached" form
# (Y+X, Y-X, 2d*T, 2Z) so an addition costs 8 multiplications).
from updater.crypto.sha512 import new_sha512

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
D2 = (2 * D) % P
SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
# Base point, extended coordinates.
B = (_BX, _BY, 1, (_BX * _BY) % P)


class Ed25519PointError(ValueError):
    """32 bytes that are not the canonical encoding of a curve point."""


def decode_point(s):
    """RFC 8032 5.1.3 decoding, strict: y < p, x recovered, (x = 0 with sign
    bit 1) rejected. Returns an extended point."""
    if len(s) != 32:
        raise Ed25519PointError("point must be 32 bytes")
    y = int.from_bytes(bytes(s), "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:
        raise Ed25519PointError("non-canonical y")
    p = P
    yy = y * y % p
    u = (yy - 1) % p
    v = (D * yy + 1) % p
    v3 = v * v % p * v % p
    x = u * v3 % p * pow(u * v3 % p * v3 % p * v % p, (p - 5) // 8, p) % p
    vxx = v * x % p * x % p
    if vxx != u:
        if vxx == (p - u) % p:
            x = x * SQRT_M1 % p
        else:
            raise Ed25519PointError("not on the curve")
    if x == 0 and sign:
        raise Ed25519PointError("x = 0 with sign bit set")
    if (x & 1) != sign:
        x = p - x
    return (x, y, 1, x * y % p)


def encode_point(pt):
    X, Y, Z, _ = pt
    p = P
    zi = pow(Z, p - 2, p)
    x = X * zi % p
    y = Y * zi % p
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _double(pt):
    # dbl-2008-hwcd with a = -1.
    X1, Y1, Z1, _ = pt
    p = P
    a = X1 * X1 % p
    b = Y1 * Y1 % p
    c = 2 * Z1 * Z1 % p
    h = a + b
    t = X1 + Y1
    e = (h - t * t) % p
    g = a - b
    f = (c + g) % p
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def _double2(pt):
    # Two doublings; the intermediate T (= e*h) is never read by a doubling,
    # so it is not computed (saves one multiplication per window step).
    X1, Y1, Z1, _ = pt
    p = P
    a = X1 * X1 % p
    b = Y1 * Y1 % p
    c = 2 * Z1 * Z1 % p
    h = a + b
    t = X1 + Y1
    e = (h - t * t) % p
    g = a - b
    f = (c + g) % p
    X1 = e * f % p
    Y1 = g * h % p
    Z1 = f * g % p
    a = X1 * X1 % p
    b = Y1 * Y1 % p
    c = 2 * Z1 * Z1 % p
    h = a + b
    t = X1 + Y1
    e = (h - t * t) % p
    g = a - b
    f = (c + g) % p
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def _cached(pt):
    X, Y, Z, T = pt
    p = P
    return ((Y + X) % p, (Y - X) % p, T * D2 % p, 2 * Z % p)


def _add_cached(pt, q):
    # add-2008-hwcd-3 with the second operand precomputed as
    # (Y2+X2, Y2-X2, 2d*T2, 2*Z2).
    X1, Y1, Z1, T1 = pt
    ypx, ymx, t2d, z2 = q
    p = P
    a = (Y1 - X1) * ymx % p
    b = (Y1 + X1) * ypx % p
    c = T1 * t2d % p
    d = Z1 * z2 % p
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def _neg(pt):
    X, Y, Z, T = pt
    return ((P - X) % P, Y, Z, (P - T) % P)


_IDENTITY = (0, 1, 1, 0)
_B_MULT = []  # [B, 2B, 3B] in extended form, filled on first use


def _b_multiples():
    if not _B_MULT:
        b2 = _double(B)
        # All three or none: a MemoryError half way must not leave a short
        # list (the next verification would index the missing entry).
        _B_MULT.extend((B, b2, _add_cached(b2, _cached(B))))
    return _B_MULT


def double_scalarmult(s, k, P2):
    """[s]B + [k]P2 for scalars s, k < 2^254. Returns an extended point."""
    bm = _b_multiples()
    a1 = P2
    a2 = _double(P2)
    a3 = _add_cached(a2, _cached(P2))
    am = (a1, a2, a3)
    # table[4*i + j] = cached(i*B + j*P2), index 0 unused.
    table = [None] * 16
    for j in range(1, 4):
        table[j] = _cached(am[j - 1])
    for i in range(1, 4):
        bi = bm[i - 1]
        table[4 * i] = _cached(bi)
        for j in range(1, 4):
            table[4 * i + j] = _cached(_add_cached(bi, table[j]))
    r = _IDENTITY
    for shift in range(252, -2, -2):
        r = _double2(r)
        idx = (((s >> shift) & 3) << 2) | ((k >> shift) & 3)
        if idx:
            r = _add_cached(r, table[idx])
    return r


class Ed25519Key:
    """A decoded Ed25519 public key. Construct with the 32 raw bytes; raises
    Ed25519PointError if they are not a canonical point encoding."""

    def __init__(self, raw):
        self.raw = bytes(raw)
        a = decode_point(self.raw)
        # Refuse the 8 points of small order (as libsodium/PyNaCl do; OpenSSL
        # does not): with such an A, [k]A is one of 8 points whatever the
        # message, so one signature would fit many messages. No honestly
        # generated key has small order.
        x8 = _double(_double(_double(a)))
        if x8[0] % P == 0 and (x8[1] - x8[2]) % P == 0:
            raise Ed25519PointError("public key of small order")
        self._neg_a = _neg(a)

    def begin(self, signature):
        """Streaming verification: feed the message with update(), then
        finish() -> bool. The message is never held in one piece."""
        return _Ed25519Verify(self, signature)

    def verify(self, signature, message):
        v = _Ed25519Verify(self, signature)
        v.update(message)
        return v.finish()


class _Ed25519Verify:
    def __init__(self, key, signature):
        self._key = key
        self._s = None
        self._h = None
        if len(signature) != 64:
            return  # finish() answers False; updates are ignored
        sig = bytes(signature)
        s = int.from_bytes(sig[32:], "little")
        if s >= L:
            return
        self._r = sig[:32]
        self._s = s
        # k = SHA-512(R || A || M)
        self._h = new_sha512(self._r)
        self._h.update(key.raw)

    def update(self, data):
        if self._h is not None:
            self._h.update(data)

    def finish(self):
        if self._h is None:
            return False
        k = int.from_bytes(self._h.digest(), "little") % L
        self._h = None
        rp = double_scalarmult(self._s, k, self._key._neg_a)
        return encode_point(rp) == self._r
