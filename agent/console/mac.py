# HMAC (RFC 2104) on the VM's native hashlib (sha1, sha256), PBKDF2-HMAC-SHA256
# (RFC 8018) and a constant-time compare. MicroPython has no hmac module.
import hashlib

BLOCK = 64  # SHA-1 and SHA-256 block size


def _pads(name, key):
    h = getattr(hashlib, name)
    key = bytes(key)
    if len(key) > BLOCK:
        key = h(key).digest()
    key = key + bytes(BLOCK - len(key))
    ipad = bytearray(BLOCK)
    opad = bytearray(BLOCK)
    for i in range(BLOCK):
        ipad[i] = key[i] ^ 0x36
        opad[i] = key[i] ^ 0x5C
    return h, bytes(ipad), bytes(opad)


def _mac(h, ipad, opad, msg):
    inner = h(ipad)
    inner.update(msg)
    outer = h(opad)
    outer.update(inner.digest())
    return outer.digest()


def hmac(name, key, msg):
    h, ipad, opad = _pads(name, key)
    return _mac(h, ipad, opad, bytes(msg))


def pbkdf2_sha256(password, salt, iterations, dklen=32):
    if iterations < 1 or dklen < 1:
        raise ValueError("iterations and dklen must be positive")
    h, ipad, opad = _pads("sha256", password)
    out = b""
    block = 1
    while len(out) < dklen:
        u = _mac(h, ipad, opad, bytes(salt) + block.to_bytes(4, "big"))
        t = int.from_bytes(u, "big")
        for _ in range(iterations - 1):
            u = _mac(h, ipad, opad, u)
            t ^= int.from_bytes(u, "big")
        out += t.to_bytes(32, "big")
        block += 1
    return out[:dklen]


def ct_equal(a, b):
    # Time depends on the lengths only, never on where the bytes differ.
    a = bytes(a)
    b = bytes(b)
    diff = len(a) ^ len(b)
    n = len(a) if len(a) > len(b) else len(b)
    for i in range(n):
        x = a[i] if i < len(a) else 0
        y = b[i] if i < len(b) else 0
        diff |= x ^ y
    return diff == 0
