# Helpers shared by the curve verifiers (ed25519.py, p256.py): a modular
# inverse by Euclid's algorithm (about 4x cheaper than pow(a, m - 2, m) on
# MicroPython's big integers) and the width-w non-adjacent form of a scalar.


def inverse(a, m):
    """a^-1 mod m for a prime m and a not divisible by m."""
    r0 = m
    r1 = a % m
    s0 = 0
    s1 = 1
    while r1:
        q = r0 // r1
        r0, r1 = r1, r0 - q * r1
        s0, s1 = s1, s0 - q * s1
    return s0 % m


def wnaf(k, w, bits):
    """Width-w NAF (2 <= w <= 8) of 0 <= k < 2^bits as a bytearray of
    bits + 8 digits (the same length for every w),
    least significant first, each digit d stored as d + 128 (d odd with
    |d| < 2^(w-1), or 0; nonzero digits are at least w positions apart).
    Works on the scalar's bytes with small integers only."""
    kb = k.to_bytes((bits + 7) // 8 + 3, "little")
    out = bytearray(bits + 8)
    for i in range(bits + 8):
        out[i] = 128
    full = 1 << w
    half = full >> 1
    mask = full - 1
    carry = 0
    i = 0
    while i < bits:
        j = i >> 3
        if (kb[j] >> (i & 7)) & 1 == carry:
            i += 1  # digit 0; a carry of 1 stays pending (bit 1 + carry 1)
            continue
        d = (((kb[j] | (kb[j + 1] << 8) | (kb[j + 2] << 16)) >> (i & 7)) & mask) + carry
        if d >= half:
            d -= full
            carry = 1
        else:
            carry = 0
        out[i] = 128 + d
        i += w
    if carry:
        out[i] = 129
    return out


def pack(rows):
    """Precomputed table rows (tuples of field elements < 2^256) as one bytes
    object, 32 little-endian bytes per element: about a third of the heap of
    the same numbers as int objects in tuples."""
    out = bytearray()
    for r in rows:
        for v in r:
            out += v.to_bytes(32, "little")
    return bytes(out)


def row(table, i, n):
    """Row i (of n elements) of a pack()ed table, as a list of ints."""
    mv = memoryview(table)
    o = i * n * 32
    out = []
    for j in range(o, o + n * 32, 32):
        out.append(int.from_bytes(mv[j:j + 32], "little"))
    return out
