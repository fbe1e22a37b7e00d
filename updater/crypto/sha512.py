# SHA-512 (FIPS 180-4) for MicroPython, whose hashlib has no sha512.
#
# Two compression functions behind one hashlib-like class:
#   * viper (updater/crypto/sha512_viper.py): 32-bit words, machine code from
#     MicroPython's viper emitter, used where the port compiles it;
#   * pure: 64-bit words held in (arbitrary precision) ints and masked with
#     0xFFFFFFFFFFFFFFFF after each addition / left shift; the fallback on a
#     port without the native emitter, and what CPython runs.
# use_viper(False) forces the pure code for objects created afterwards (tests
# run both paths on the VM); backend() names the one in use.
#
# Interface like hashlib: sha512(data=b"") with update(), digest(),
# hexdigest(), copy(); digest_size 64, block_size 128. Streaming: only a
# 128-byte block buffer and the message schedule (preallocated once per
# object) are kept.
#
# `new_sha512` returns the native hashlib.sha512 on CPython when it exists
# and this class otherwise.
import struct
import binascii
from array import array

try:
    from updater.crypto import sha512_viper as _viper
except (ImportError, SyntaxError, ValueError):  # CPython; no native emitter; .mpy of another arch
    _viper = None

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_MASK = const(0xFFFFFFFFFFFFFFFF)

# The 80 round constants of FIPS 180-4 as 160 32-bit words (high, low),
# little-endian: read in place by the viper code (ptr32), unpacked into 64-bit
# ints for the pure code only when that runs (see _k64).
_K_LE = (
    b"\x98\x2f\x8a\x42\x22\xae\x28\xd7\x91\x44\x37\x71\xcd\x65\xef\x23\xcf\xfb\xc0\xb5"
    b"\x2f\x3b\x4d\xec\xa5\xdb\xb5\xe9\xbc\xdb\x89\x81\x5b\xc2\x56\x39\x38\xb5\x48\xf3"
    b"\xf1\x11\xf1\x59\x19\xd0\x05\xb6\xa4\x82\x3f\x92\x9b\x4f\x19\xaf\xd5\x5e\x1c\xab"
    b"\x18\x81\x6d\xda\x98\xaa\x07\xd8\x42\x02\x03\xa3\x01\x5b\x83\x12\xbe\x6f\x70\x45"
    b"\xbe\x85\x31\x24\x8c\xb2\xe4\x4e\xc3\x7d\x0c\x55\xe2\xb4\xff\xd5\x74\x5d\xbe\x72"
    b"\x6f\x89\x7b\xf2\xfe\xb1\xde\x80\xb1\x96\x16\x3b\xa7\x06\xdc\x9b\x35\x12\xc7\x25"
    b"\x74\xf1\x9b\xc1\x94\x26\x69\xcf\xc1\x69\x9b\xe4\xd2\x4a\xf1\x9e\x86\x47\xbe\xef"
    b"\xe3\x25\x4f\x38\xc6\x9d\xc1\x0f\xb5\xd5\x8c\x8b\xcc\xa1\x0c\x24\x65\x9c\xac\x77"
    b"\x6f\x2c\xe9\x2d\x75\x02\x2b\x59\xaa\x84\x74\x4a\x83\xe4\xa6\x6e\xdc\xa9\xb0\x5c"
    b"\xd4\xfb\x41\xbd\xda\x88\xf9\x76\xb5\x53\x11\x83\x52\x51\x3e\x98\xab\xdf\x66\xee"
    b"\x6d\xc6\x31\xa8\x10\x32\xb4\x2d\xc8\x27\x03\xb0\x3f\x21\xfb\x98\xc7\x7f\x59\xbf"
    b"\xe4\x0e\xef\xbe\xf3\x0b\xe0\xc6\xc2\x8f\xa8\x3d\x47\x91\xa7\xd5\x25\xa7\x0a\x93"
    b"\x51\x63\xca\x06\x6f\x82\x03\xe0\x67\x29\x29\x14\x70\x6e\x0e\x0a\x85\x0a\xb7\x27"
    b"\xfc\x2f\xd2\x46\x38\x21\x1b\x2e\x26\xc9\x26\x5c\xfc\x6d\x2c\x4d\xed\x2a\xc4\x5a"
    b"\x13\x0d\x38\x53\xdf\xb3\x95\x9d\x54\x73\x0a\x65\xde\x63\xaf\x8b\xbb\x0a\x6a\x76"
    b"\xa8\xb2\x77\x3c\x2e\xc9\xc2\x81\xe6\xae\xed\x47\x85\x2c\x72\x92\x3b\x35\x82\x14"
    b"\xa1\xe8\xbf\xa2\x64\x03\xf1\x4c\x4b\x66\x1a\xa8\x01\x30\x42\xbc\x70\x8b\x4b\xc2"
    b"\x91\x97\xf8\xd0\xa3\x51\x6c\xc7\x30\xbe\x54\x06\x19\xe8\x92\xd1\x18\x52\xef\xd6"
    b"\x24\x06\x99\xd6\x10\xa9\x65\x55\x85\x35\x0e\xf4\x2a\x20\x71\x57\x70\xa0\x6a\x10"
    b"\xb8\xd1\xbb\x32\x16\xc1\xa4\x19\xc8\xd0\xd2\xb8\x08\x6c\x37\x1e\x53\xab\x41\x51"
    b"\x4c\x77\x48\x27\x99\xeb\x8e\xdf\xb5\xbc\xb0\x34\xa8\x48\x9b\xe1\xb3\x0c\x1c\x39"
    b"\x63\x5a\xc9\xc5\x4a\xaa\xd8\x4e\xcb\x8a\x41\xe3\x4f\xca\x9c\x5b\x73\xe3\x63\x77"
    b"\xf3\x6f\x2e\x68\xa3\xb8\xb2\xd6\xee\x82\x8f\x74\xfc\xb2\xef\x5d\x6f\x63\xa5\x78"
    b"\x60\x2f\x17\x43\x14\x78\xc8\x84\x72\xab\xf0\xa1\x08\x02\xc7\x8c\xec\x39\x64\x1a"
    b"\xfa\xff\xbe\x90\x28\x1e\x63\x23\xeb\x6c\x50\xa4\xe9\xbd\x82\xde\xf7\xa3\xf9\xbe"
    b"\x15\x79\xc6\xb2\xf2\x78\x71\xc6\x2b\x53\x72\xe3\xce\x3e\x27\xca\x9c\x61\x26\xea"
    b"\xc7\xb8\x86\xd1\x07\xc2\xc0\x21\xd6\x7d\xda\xea\x1e\xeb\xe0\xcd\x7f\x4f\x7d\xf5"
    b"\x78\xd1\x6e\xee\xaa\x67\xf0\x06\xba\x6f\x17\x72\xc5\x7d\x63\x0a\xa6\x98\xc8\xa2"
    b"\x04\x98\x3f\x11\xae\x0d\xf9\xbe\x35\x0b\x71\x1b\x1b\x47\x1c\x13\xf5\x77\xdb\x28"
    b"\x84\x7d\x04\x23\x7b\xab\xca\x32\x93\x24\xc7\x40\x0a\xbe\x9e\x3c\xbc\xbe\xc9\x15"
    b"\xc4\x67\x1d\x43\x4c\x0d\x10\x9c\xbe\xd4\xc5\x4c\xb6\x42\x3e\xcb\x9c\x29\x7f\x59"
    b"\x2a\x7e\x65\xfc\xab\x6f\xcb\x5f\xec\xfa\xd6\x3a\x8c\x19\x44\x6c\x17\x58\x47\x4a"
)

_IV = (
    0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
    0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
)


_K64 = []


def _k64():
    if not _K64:
        k = struct.unpack("<160I", _K_LE)
        for i in range(0, 160, 2):
            _K64.append((k[i] << 32) | k[i + 1])
    return _K64


def _compress(h, w, block, off):
    # One 128-byte block at block[off:off+128] into the state list h, using
    # the preallocated 80-entry schedule list w. A 64-bit rotation is done as
    # ((x | x << 64) >> n) & M: one doubled copy serves all three rotations of
    # a sigma function. ch and maj use the 3- and 4-operation forms.
    M = _MASK
    K = _k64()
    w[0:16] = struct.unpack_from(">16Q", block, off)
    for t in range(16, 80):
        x = w[t - 15]
        xx = x | (x << 64)
        y = w[t - 2]
        yy = y | (y << 64)
        w[t] = (w[t - 16] + w[t - 7]
                + ((((xx >> 1) ^ (xx >> 8)) & M) ^ (x >> 7))
                + ((((yy >> 19) ^ (yy >> 61)) & M) ^ (y >> 6))) & M
    a, b, c, d, e, f, g, hh = h
    for t in range(80):
        ee = e | (e << 64)
        t1 = hh + (((ee >> 14) ^ (ee >> 18) ^ (ee >> 41)) & M) + (g ^ (e & (f ^ g))) + K[t] + w[t]
        aa = a | (a << 64)
        t2 = (((aa >> 28) ^ (aa >> 34) ^ (aa >> 39)) & M) + ((a & b) | (c & (a | b)))
        hh = g
        g = f
        f = e
        e = (d + t1) & M
        d = c
        c = b
        b = a
        a = (t1 + t2) & M
    h[0] = (h[0] + a) & M
    h[1] = (h[1] + b) & M
    h[2] = (h[2] + c) & M
    h[3] = (h[3] + d) & M
    h[4] = (h[4] + e) & M
    h[5] = (h[5] + f) & M
    h[6] = (h[6] + g) & M
    h[7] = (h[7] + hh) & M


class sha512:
    digest_size = 64
    block_size = 128
    name = "sha512"

    def __init__(self, data=b""):
        if _state[0]:
            self._c = _viper.compress
            self._h = array("I", _IV32)
            self._w = array("I", bytes(640))
        else:
            self._c = _compress
            self._h = list(_IV)
            self._w = [0] * 80
        self._buf = bytearray(128)
        self._n = 0  # bytes waiting in _buf
        self._len = 0  # total message length in bytes
        if data:
            self.update(data)

    def update(self, data):
        if isinstance(data, str):
            raise TypeError("sha512 wants bytes, not str")
        mv = memoryview(data)
        n = len(mv)
        self._len += n
        pos = 0
        buf = self._buf
        if self._n:
            take = 128 - self._n
            if take > n:
                take = n
            buf[self._n:self._n + take] = mv[0:take]
            self._n += take
            pos = take
            if self._n < 128:
                return
            self._c(self._h, self._w, buf, 0)
            self._n = 0
        h = self._h
        w = self._w
        c = self._c
        # Whole blocks straight from the caller's buffer, no copy.
        while n - pos >= 128:
            c(h, w, mv, pos)
            pos += 128
        if pos < n:
            rest = n - pos
            buf[0:rest] = mv[pos:n]
            self._n = rest

    def copy(self):
        c = sha512()
        c._c = self._c
        c._w = self._w[:]
        c._h = self._h[:]
        c._buf[:] = self._buf
        c._n = self._n
        c._len = self._len
        return c

    def digest(self):
        # Finalise on copies so the object can keep being updated.
        h = self._h[:]
        w = self._w
        buf = bytearray(self._buf)
        n = self._n
        buf[n] = 0x80
        for i in range(n + 1, 128):
            buf[i] = 0
        if n >= 112:
            self._c(h, w, buf, 0)
            for i in range(128):
                buf[i] = 0
        bits = self._len * 8
        struct.pack_into(">QQ", buf, 112, (bits >> 64) & _MASK, bits & _MASK)
        self._c(h, w, buf, 0)
        if self._c is _compress:
            return struct.pack(">8Q", h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
        out = bytearray(64)
        for i in range(16):
            struct.pack_into(">I", out, 4 * i, h[i])
        return bytes(out)

    def hexdigest(self):
        return binascii.hexlify(self.digest()).decode()


# _IV as 32-bit halves, then the mask the viper code reads (see sha512_viper).
_IV32 = array("I")
for _v in _IV:
    _IV32.append(_v >> 32)
    _IV32.append(_v & 0xFFFFFFFF)
_IV32.append(0xFFFFFFFF)
if _viper is not None:
    if array("I", _K_LE[:4])[0] == 0x428A2F98:
        _viper.K = _K_LE
    else:  # a big-endian port: ptr32 would read the constants byte-swapped
        _viper = None
_state = [_viper is not None]  # [use the viper compression]


def use_viper(flag=True):
    """Select the compression for sha512 objects created from now on; viper
    only where the port has it. Returns True if viper is now selected."""
    _state[0] = bool(flag) and _viper is not None
    return _state[0]


def backend():
    return "viper" if _state[0] else "pure"


def new_sha512(data=b""):
    """Native hashlib.sha512 where the runtime has it (CPython), else the
    pure implementation above."""
    try:
        import hashlib

        return hashlib.sha512(data)
    except (ImportError, AttributeError):
        return sha512(data)
