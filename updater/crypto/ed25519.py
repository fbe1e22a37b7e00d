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
# y = Y/Z, xy = T/Z (Hisil-Wong-Carter-Dawson 2008, a = -1). [S]B + [k](-A)
# is one doubling chain over width-w NAF digits of both scalars:
#   * from a key's second verification on, each scalar is split as
#     lo + 2^127 hi, so four half-length scalars share one chain of 127
#     doublings (instead of 253); the first uses S and k whole;
#   * B and [2^127]B: their odd multiples 1..31 in affine "niels" form
#     (y+x, y-x, 2dxy), built once per process on first use (2 x 16
#     entries, packed into 2 x 1.5 KB of bytes), so each of their additions
#     is a mixed one;
#   * -A: odd multiples 1..7 in "cached" form (Y+X, Y-X, 2dT, 2Z), built
#     when the key is loaded (512 bytes packed, kept with the key);
#     [2^127](-A) likewise, built (127 doublings) at the key's second
#     verification: a key costs 1 KB from then on (verify.py caches <= 16);
#   * negative digits use the same entries with Y+X / Y-X swapped and the T
#     term negated; a doubling computes T only when an addition follows;
#   * the final encoding inverts Z with Euclid's algorithm, not pow().
from updater.crypto.scalar import inverse, pack, row, wnaf
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
    zi = inverse(Z, p)
    x = X * zi % p
    y = Y * zi % p
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _double(pt, with_t=True):
    # dbl-2008-hwcd with a = -1; T of the result only if asked (a doubling
    # never reads T, an addition does).
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
    return (e * f % p, g * h % p, f * g % p, e * h % p if with_t else 0)


def _cached(pt):
    X, Y, Z, T = pt
    p = P
    return ((Y + X) % p, (Y - X) % p, T * D2 % p, 2 * Z % p)


def _add_cached(pt, q, neg=False):
    # add-2008-hwcd-3, pt + q (or pt - q) with q precomputed as
    # (Y2+X2, Y2-X2, 2d*T2, 2*Z2), or as affine niels (y2+x2, y2-x2, 2d*x2*y2)
    # with Z2 = 1 (3 entries: mixed addition).
    X1, Y1, Z1, T1 = pt
    p = P
    if neg:
        ymx, ypx = q[0], q[1]
    else:
        ypx, ymx = q[0], q[1]
    a = (Y1 - X1) * ymx % p
    b = (Y1 + X1) * ypx % p
    c = T1 * q[2] % p
    d = Z1 * q[3] % p if len(q) == 4 else 2 * Z1
    if neg:
        c = -c
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def _neg(pt):
    X, Y, Z, T = pt
    return ((P - X) % P, Y, Z, (P - T) % P)


_IDENTITY = (0, 1, 1, 0)
_HALF = 127  # scalars (< 2^253) are split as lo + 2^127 * hi
_W_B = 6  # wNAF width for the base point scalar S
_W_A = 4  # wNAF width for the key scalar k
_B_TABLES = []  # niels forms of the odd multiples of B and of 2^127 B (packed)


def _odd_multiples(pt, n):
    # [pt, 3pt, 5pt, ...] (n entries) in extended coordinates.
    out = [pt]
    d2 = _cached(_double(pt))
    for i in range(1, n):
        out.append(_add_cached(out[i - 1], d2))
    return out


def _shifted(pt):
    # [2^127] pt
    for _ in range(_HALF):
        pt = _double(pt, False)
    return (pt[0], pt[1], pt[2], pt[0] * pt[1] % P * inverse(pt[2], P) % P)


def _base_tables():
    if not _B_TABLES:
        p = P
        tabs = []
        for base in (B, _shifted(B)):
            tab = []
            for X, Y, Z, _ in _odd_multiples(base, 1 << (_W_B - 2)):
                zi = inverse(Z, p)
                x = X * zi % p
                y = Y * zi % p
                tab.append(((y + x) % p, (y - x) % p, x * y % p * D2 % p))
            tabs.append(pack(tab))
        # Both tables or none: a MemoryError half way must not leave one
        # (the next verification would index the missing second table).
        _B_TABLES.extend(tabs)
    return _B_TABLES


def point_table(pt, shift=False):
    """Per-key table: cached forms of the odd multiples (< 2^(_W_A-1)) of pt,
    or of [2^127] pt with shift (127 doublings: built only for a key that is
    used again, see Ed25519Key)."""
    return pack([_cached(q) for q in _odd_multiples(_shifted(pt) if shift else pt, 1 << (_W_A - 2))])


def _mul(s, k, ktables):
    # [s]B + [k]Q, s, k < 2^253, ktables = [point_table(Q)] or, faster,
    # [point_table(Q), point_table(Q, True)]: then both scalars are split in
    # 127-bit halves and four scalars share one chain of 127 doublings.
    bt = _base_tables()
    if len(ktables) == 2:
        m = (1 << _HALF) - 1
        bits = _HALF
        terms = (  # digits, packed table, elements per entry
            (wnaf(s & m, _W_B, bits), bt[0], 3),
            (wnaf(s >> _HALF, _W_B, bits), bt[1], 3),
            (wnaf(k & m, _W_A, bits), ktables[0], 4),
            (wnaf(k >> _HALF, _W_A, bits), ktables[1], 4),
        )
    else:
        bits = 253
        terms = ((wnaf(s, _W_B, bits), bt[0], 3), (wnaf(k, _W_A, bits), ktables[0], 4))
    r = _IDENTITY
    started = False
    for i in range(bits + 7, -1, -1):
        add = False
        for digits, _, _ in terms:
            if digits[i] != 128:
                add = True
                break
        if started:
            r = _double(r, add)
        if add:
            started = True
            for digits, table, n in terms:
                d = digits[i] - 128
                if d > 0:
                    r = _add_cached(r, row(table, d >> 1, n))
                elif d < 0:
                    r = _add_cached(r, row(table, (-d) >> 1, n), True)
    return r


def double_scalarmult(s, k, P2):
    """[s]B + [k]P2 for scalars s, k < 2^253. Returns an extended point."""
    return _mul(s, k, [point_table(P2)])


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
        self._tables = [point_table(self._neg_a)]
        self._used = False

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
        key = self._key
        if key._used and len(key._tables) == 1:
            # A key used again (a long-lived client re-verifying with it):
            # the [2^127](-A) table halves the doubling chain from now on.
            key._tables.append(point_table(key._neg_a, True))
        key._used = True
        rp = _mul(self._s, k, key._tables)
        return encode_point(rp) == self._r
