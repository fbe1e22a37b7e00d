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
# multiplication [S]B + [k](-A) is Straus/Shamir over width-5 NAF
# digits of both scalars (double_scalarmult), with B's odd multiples in a
# module table built once and -A's per verification; the one inversion of
# the final encoding is an extended Euclid (updater.crypto.inv_mod), not pow(z, p - 2, p).
from updater.crypto import inv_mod
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
# y of the 8 points of small order: 1 (order 1), p - 1 (2), 0 (4) and
# +-_Y8 (8); tests/host/test_crypto_differential.py and the conformance
# vectors check the refusal against an independent RFC 8032 reference.
_Y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022
_SMALL_Y = (0, 1, P - 1, _Y8, P - _Y8)


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
    x = u * v3 % p * _pow_p58(u * v3 % p * v3 % p * v % p) % p
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


def _sq(a, k):
    # a^(2^k) mod p: k squarings inside one pow() (C, no object per step:
    # ~12 % faster on the VM than a Python loop of a * a % p).
    return pow(a, 1 << k, P)


def _pow_p58(z):
    # z^((p - 5) / 8) = z^(2^252 - 3) by ref10's addition chain (pow22523):
    # 252 squarings and 11 multiplications, ~40 % faster than pow(z, e, p)
    # on the VM (bench/bench_crypto.py: key load), which squares and
    # multiplies bit by bit.
    p = P
    z2 = z * z % p
    z9 = _sq(z2, 2) * z % p
    z11 = z9 * z2 % p
    a = z11 * z11 % p * z9 % p  # z^(2^5 - 1)
    b = _sq(a, 5) * a % p  # 2^10 - 1
    c = _sq(b, 10) * b % p  # 2^20 - 1
    c = _sq(_sq(c, 20) * c % p, 10) * b % p  # 2^50 - 1
    d = _sq(c, 50) * c % p  # 2^100 - 1
    d = _sq(_sq(d, 100) * d % p, 50) * c % p  # 2^250 - 1
    return _sq(d, 2) * z % p  # 2^252 - 3


def encode_point(pt):
    X, Y, Z = pt[0], pt[1], pt[2]
    p = P
    zi = inv_mod(Z, P)
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

# Odd multiples B, 3B, ..., 15B in affine "precomputed" form
# (y + x, y - x, 2d*x*y), built on first use and kept for the life of the
# module: 8 x 3 integers (~2.1 KiB of heap on the unix VM, bench_crypto).
_B_TABLE = []


def _tight(v):
    return int.from_bytes(v.to_bytes(32, "little"), "little")


def _b_table():
    if not _B_TABLE:
        p = P
        b2 = _cached(_double(B))
        pt = B
        out = []
        for i in range(8):
            X, Y, Z, T = pt
            zi = inv_mod(Z, P)
            x = X * zi % p
            y = Y * zi % p
            # Re-made from bytes: a remainder keeps the digit buffer of its
            # dividend (~3.1 KiB for the table); tight integers ~2.1 KiB.
            out.append((_tight((y + x) % p), _tight((y - x) % p), _tight(x * y % p * D2 % p)))
            pt = _add_cached(pt, b2)
        # All or nothing: a MemoryError half way leaves the table empty.
        _B_TABLE.extend(out)
    return _B_TABLE


def _slide(k, out):
    # Width-5 NAF of k < 2^253 into out (an all-zero array('b') of 256):
    # out[i] in {0, +-1, +-3, ..., +-15}, sum(out[i] * 2^i) == k, nonzero
    # digits at least 5 positions apart. Carry-based windows over the bytes
    # of k (as libsecp256k1's ecmult_wnaf), on small integers only: zero bits
    # are skipped one at a time, each nonzero digit consumes a 5-bit window.
    kb = k.to_bytes(34, "little")  # 2 spare bytes for the 16-bit reads
    carry = 0
    bit = 0
    while bit < 256:
        o = bit >> 3
        if ((kb[o] >> (bit & 7)) & 1) == carry:
            bit += 1
            continue
        word = (((kb[o] | (kb[o + 1] << 8)) >> (bit & 7)) & 31) + carry
        carry = (word >> 4) & 1
        out[bit] = word - (carry << 5)
        bit += 5


def _a_table(a):
    # Odd multiples a, 3a, ..., 15a of an extended point, in cached form
    # (Y + X, Y - X, 2d*T, 2Z): 8 points per verification (transient).
    a2 = _cached(_double(a))
    out = [_cached(a)]
    pt = a
    for i in range(7):
        pt = _add_cached(pt, a2)
        out.append(_cached(pt))
    return out


def double_scalarmult(s, k, P2):
    """[s]B + [k]P2 for scalars s, k < 2^253. Returns (X, Y, Z) of the
    result in projective coordinates (encode_point accepts it).

    Straus/Shamir over width-5 NAFs: one shared chain of doublings,
    an addition per nonzero digit of either scalar (digits +-1..15: about
    253/6 additions per scalar), B's odd multiples from the module table in
    affine form (mixed additions), P2's built per call. The point is kept in
    local variables (no tuple per step); T is computed only when an addition
    follows the doubling."""
    from array import array

    sd = array("b", bytes(256))
    kd = array("b", bytes(256))
    _slide(s, sd)
    _slide(k, kd)
    bt = _b_table()
    at = _a_table(P2)
    p = P
    i = 255
    while i >= 0 and not sd[i] and not kd[i]:
        i -= 1
    X, Y, Z, T = 0, 1, 1, 0
    while i >= 0:
        # dbl-2008-hwcd, a = -1 (as _double), T only when needed.
        a = X * X % p
        b = Y * Y % p
        c = 2 * Z * Z % p
        h = a + b
        t = X + Y
        # Squares reduced before they are multiplied again: a 512-bit factor
        # would make the next product's reduction ~4x dearer.
        e = (h - t * t) % p
        g = a - b
        f = c + g
        X = e * f % p
        Y = g * h % p
        Z = f * g % p
        dk = kd[i]
        ds = sd[i]
        if dk or ds:
            T = e * h % p
        if dk:
            # add-2008-hwcd-3 with a cached point; -Q swaps Y+X, Y-X and
            # negates 2dT.
            if dk > 0:
                ypx, ymx, t2d, z2 = at[dk >> 1]
            else:
                ymx, ypx, t2d, z2 = at[(-dk) >> 1]
                t2d = -t2d
            a = (Y - X) * ymx % p
            b = (Y + X) * ypx % p
            c = T * t2d % p
            d = Z * z2 % p
            e = b - a
            f = d - c
            g = d + c
            h = b + a
            X = e * f % p
            Y = g * h % p
            Z = f * g % p
            if ds:
                T = e * h % p
        if ds:
            # Mixed addition with an affine point (Z2 = 1, so 2*Z1*Z2 = 2*Z1).
            if ds > 0:
                ypx, ymx, t2d = bt[ds >> 1]
            else:
                ymx, ypx, t2d = bt[(-ds) >> 1]
                t2d = -t2d
            a = (Y - X) * ymx % p
            b = (Y + X) * ypx % p
            c = T * t2d % p
            d = 2 * Z
            e = b - a
            f = d - c
            g = d + c
            h = b + a
            X = e * f % p
            Y = g * h % p
            Z = f * g % p
        i -= 1
    return (X % p, Y % p, Z % p)


class Ed25519Key:
    """A decoded Ed25519 public key. Construct with the 32 raw bytes; raises
    Ed25519PointError if they are not a canonical point encoding."""

    def __init__(self, raw):
        self.raw = bytes(raw)
        a = decode_point(self.raw)
        # Refuse the 8 points of small order (as libsodium/PyNaCl do; OpenSSL
        # does not): with such an A, [k]A is one of 8 points whatever the
        # message, so one signature would fit many messages. No honestly
        # generated key has small order. They are exactly the points whose
        # (canonical) y is one of _SMALL_Y (libsodium's blacklist of
        # encodings): a look-up, not three doublings.
        if a[1] in _SMALL_Y:
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
