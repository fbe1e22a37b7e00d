# AES-CCM (RFC 3610) for the device, on top of the platform's AES block cipher.
#
# The CCM construction below is the same code on both runtimes; only the
# block-cipher shim differs:
#   - MicroPython: cryptolib.aes (mode 1 = ECB, mode 2 = CBC), implemented in C
#     by mbedTLS/axTLS in the VM;
#   - CPython: cryptography's AES in ECB / CBC mode.
# The shim offers exactly two primitives:
#   ecb(data)          AES-encrypt each 16-byte block of data independently
#                      (used for the CTR keystream: all counter blocks at once);
#   cbc_last(data)     last block of AES-CBC encryption of data under a zero IV,
#                      which is the CBC-MAC X_{n+1} of RFC 3610 section 2.2.
# Doing whole buffers per native call keeps the Python-level work per record
# to a handful of operations instead of one loop iteration per block.
#
# API mirrors cryptography's AESCCM: AESCCM(key, tag_length).encrypt(nonce,
# data, aad) -> ciphertext || tag; decrypt(...) -> plaintext or raises
# InvalidTag. COSE AES-CCM-16-64-128 = 16-byte key, 13-byte nonce (L = 2),
# 8-byte tag (M = 8).
from board.compat import IS_MICROPYTHON, const

_BLOCK = const(16)
# Messages on the device are small records; cap the work per call. RFC 3610
# with L = 2 allows up to 65535 bytes anyway.
MAX_MESSAGE = const(16384)
MAX_AAD = const(4096)


class CCMError(ValueError):
    # Bad parameters (key/nonce/tag length, oversize input).
    pass


class InvalidTag(CCMError):
    # Authentication failed: forged, corrupted, or wrong key/nonce/AAD.
    pass


if IS_MICROPYTHON:
    import cryptolib

    class _Aes:
        def __init__(self, key):
            self._key = bytes(key)
            # ECB object is stateless between calls: keep one.
            self._ecb = cryptolib.aes(self._key, 1)

        def ecb(self, data):
            return self._ecb.encrypt(data)

        def cbc_last(self, data):
            # CBC objects carry the chaining state: a fresh one per MAC.
            out = cryptolib.aes(self._key, 2, bytes(_BLOCK)).encrypt(data)
            return out[len(out) - _BLOCK:]

else:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    class _Aes:
        def __init__(self, key):
            self._alg = algorithms.AES(bytes(key))

        def ecb(self, data):
            enc = Cipher(self._alg, modes.ECB()).encryptor()
            return enc.update(bytes(data)) + enc.finalize()

        def cbc_last(self, data):
            enc = Cipher(self._alg, modes.CBC(bytes(_BLOCK))).encryptor()
            out = enc.update(bytes(data)) + enc.finalize()
            return out[len(out) - _BLOCK:]


def _xor(a, b):
    # XOR of two equal-length byte strings through big integers: one native
    # operation instead of a Python loop over bytes (matters on MicroPython).
    n = len(a)
    if n == 0:
        return b""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(n, "big")


def _pad_len(n):
    return (-n) % _BLOCK


def _ct_equal(a, b):
    # Constant-time comparison of two equal-length tags.
    if len(a) != len(b):
        return False
    acc = 0
    for i in range(len(a)):
        acc |= a[i] ^ b[i]
    return acc == 0


class AESCCM:
    def __init__(self, key, tag_length=8):
        if not isinstance(key, (bytes, bytearray)) or len(key) not in (16, 24, 32):
            raise CCMError("AES key must be 16, 24 or 32 bytes")
        if tag_length not in (4, 6, 8, 10, 12, 14, 16):
            raise CCMError("CCM tag length must be an even number 4..16")
        self._aes = _Aes(key)
        self._m = tag_length

    def _check(self, nonce, data, aad):
        if not isinstance(nonce, (bytes, bytearray)) or not 7 <= len(nonce) <= 13:
            raise CCMError("CCM nonce must be 7..13 bytes")
        q = 15 - len(nonce)  # L: bytes for the message length
        if len(data) > MAX_MESSAGE or len(data) >= (1 << (8 * q)):
            raise CCMError("message too long for CCM")
        if len(aad) > MAX_AAD:
            raise CCMError("associated data too long")
        return q

    def _mac(self, nonce, q, msg, aad):
        # B_0 | encoded aad | pad | msg | pad, then CBC-MAC (RFC 3610 2.2).
        flags = (0x40 if len(aad) else 0) | (((self._m - 2) // 2) << 3) | (q - 1)
        parts = [bytes((flags,)), bytes(nonce), len(msg).to_bytes(q, "big")]
        if len(aad):
            # Lengths below 2^16 - 2^8 use two bytes; MAX_AAD keeps us there.
            la = len(aad).to_bytes(2, "big")
            parts.append(la)
            parts.append(bytes(aad))
            parts.append(bytes(_pad_len(2 + len(aad))))
        parts.append(bytes(msg))
        parts.append(bytes(_pad_len(len(msg))))
        return self._aes.cbc_last(b"".join(parts))[: self._m]

    def _keystream(self, nonce, q, n):
        # S_0 || S_1 .. S_k for k = ceil(n/16): one ECB call over all counter
        # blocks A_i = flags(L-1) | nonce | i (RFC 3610 2.3).
        blocks = (n + _BLOCK - 1) // _BLOCK + 1
        ctr = bytearray(blocks * _BLOCK)
        nl = len(nonce)
        for i in range(blocks):
            o = i * _BLOCK
            ctr[o] = q - 1
            ctr[o + 1:o + 1 + nl] = nonce
            # counter i in the last q bytes (q >= 2; blocks < 2^16 here)
            ctr[o + 14] = (i >> 8) & 0xFF
            ctr[o + 15] = i & 0xFF
        return self._aes.ecb(ctr)

    def encrypt(self, nonce, data, aad=b""):
        q = self._check(nonce, data, aad)
        tag = self._mac(nonce, q, data, aad)
        s = self._keystream(nonce, q, len(data))
        ct = _xor(bytes(data), s[_BLOCK:_BLOCK + len(data)])
        return ct + _xor(tag, s[: self._m])

    def decrypt(self, nonce, data, aad=b""):
        if len(data) < self._m:
            raise InvalidTag("ciphertext shorter than the tag")
        body = data[: len(data) - self._m]
        q = self._check(nonce, body, aad)
        s = self._keystream(nonce, q, len(body))
        msg = _xor(bytes(body), s[_BLOCK:_BLOCK + len(body)])
        tag = _xor(bytes(data[len(data) - self._m:]), s[: self._m])
        if not _ct_equal(self._mac(nonce, q, msg, aad), tag):
            raise InvalidTag("CCM authentication failed")
        return msg
