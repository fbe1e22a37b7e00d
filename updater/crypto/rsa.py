# RSASSA-PSS verification with SHA-256 and MGF1-SHA-256 (RFC 8017 8.1.2 and
# 9.1.2), pure Python on big integers, for MicroPython and CPython.
#
# The salt length is recovered from the encoded message (like
# cryptography's PSS.AUTO on verify); securesystemslib signs with a salt as
# long as the digest (32 bytes), which is simply one of the accepted cases.
# The signature must be exactly as long as the modulus (k bytes), as every
# signer emits it.
import hashlib

from updater.crypto.streaming import Sha256Verify

_HLEN = 32
_NIBBLE_BITS = (0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4)


def bit_length(n):
    """int.bit_length() for n >= 0 (MicroPython ints have no bit_length)."""
    if n <= 0:
        return 0
    h = "%x" % n
    return (len(h) - 1) * 4 + _NIBBLE_BITS[int(h[0], 16)]


def _mgf1_xor(db, seed, length):
    # db[:length] ^= MGF1-SHA256(seed, length), in place.
    counter = 0
    pos = 0
    while pos < length:
        h = hashlib.sha256(seed)
        h.update(counter.to_bytes(4, "big"))
        block = h.digest()
        for i in range(min(_HLEN, length - pos)):
            db[pos + i] ^= block[i]
        pos += _HLEN
        counter += 1


class RSAPSSKey:
    """RSA public key (n, e) verifying rsassa-pss-sha256 signatures."""

    def __init__(self, n, e):
        self.n = n
        self.e = e
        self.bits = bit_length(n)
        self.k = (self.bits + 7) // 8

    def begin(self, signature):
        """Streaming verification: update(data)..., then finish() -> bool."""
        return Sha256Verify(self, signature)

    def verify(self, signature, message):
        return self.verify_digest(signature, hashlib.sha256(message).digest())

    def verify_digest(self, signature, mh):
        """PSS check against mh = SHA-256 of the message."""
        n = self.n
        k = self.k
        if len(signature) != k:
            return False
        s = int.from_bytes(bytes(signature), "big")
        if s >= n:
            return False
        m = pow(s, self.e, n)
        em_bits = self.bits - 1
        em_len = (em_bits + 7) // 8
        if m >> (8 * em_len):
            return False
        em = m.to_bytes(em_len, "big")
        if em_len < _HLEN + 2 or em[em_len - 1] != 0xBC:
            return False
        db_len = em_len - _HLEN - 1
        h = em[db_len:em_len - 1]
        # The leftmost 8*emLen - emBits bits of maskedDB must be zero.
        top = 8 * em_len - em_bits
        top_mask = (0xFF >> top) & 0xFF
        if em[0] & (~top_mask & 0xFF):
            return False
        db = bytearray(em[:db_len])
        _mgf1_xor(db, h, db_len)
        db[0] &= top_mask
        # DB = PS (zeros) || 0x01 || salt
        i = 0
        while i < db_len and db[i] == 0:
            i += 1
        if i == db_len or db[i] != 1:
            return False
        salt = bytes(db[i + 1:])
        hp = hashlib.sha256(b"\x00" * 8)
        hp.update(mh)
        hp.update(salt)
        return hp.digest() == h
