# Pure-MicroPython crypto for the TUF client: canonical JSON, sha512, signature verification.


def inv_mod(a, m):
    # 1/a mod m (m prime) by the extended Euclidean algorithm: on MicroPython's
    # big integers ~30x faster than pow(a, m - 2, m) (~20 us vs ~0.65 ms on the
    # unix VM); 0 for a = 0 mod m. Not constant time: ed25519 and p256 invert
    # only public values.
    r0, r1 = m, a % m
    t0, t1 = 0, 1
    while r1:
        q = r0 // r1
        r0, r1 = r1, r0 - q * r1
        t0, t1 = t1, t0 - q * t1
    return t0 % m
