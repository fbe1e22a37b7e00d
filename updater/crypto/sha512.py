# SHA-512 (FIPS 180-4) in pure Python for MicroPython, whose hashlib has no
# sha512. Words are 64-bit values held in (arbitrary precision) ints and
# masked with 0xFFFFFFFFFFFFFFFF after each addition / left shift.
#
# Interface like hashlib: sha512(data=b"") with update(), digest(),
# hexdigest(), copy(); digest_size 64, block_size 128. Streaming: only a
# 128-byte block buffer and the 80-word message schedule (preallocated once
# per object) are kept.
#
# `sha512` is this pure class on every runtime. `sha512_viper` is the same
# interface over the viper compression in sha512_viper.py (32-bit halves,
# 192 bytes of state per object, one 640-byte K table per process); it is
# None where viper is absent (CPython, a port without the native emitter, an
# .mpy built for another architecture). `new_sha512` returns the native
# hashlib.sha512 where it exists (CPython), else the viper class, else the
# pure class. `use_viper(False)` forces the pure fallback (tests run both).
import struct
import binascii

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_MASK = const(0xFFFFFFFFFFFFFFFF)

# The 80 round constants K0..K79, big-endian 64-bit words, as one bytes
# constant (640 bytes; a tuple of 80 big integers would keep ~3.8 KiB on
# MicroPython). The pure code unpacks it on first use (_k64), the viper
# code into 32-bit halves at import.
_KB = (
    b"\x42\x8a\x2f\x98\xd7\x28\xae\x22\x71\x37\x44\x91\x23\xef\x65\xcd"
    b"\xb5\xc0\xfb\xcf\xec\x4d\x3b\x2f\xe9\xb5\xdb\xa5\x81\x89\xdb\xbc"
    b"\x39\x56\xc2\x5b\xf3\x48\xb5\x38\x59\xf1\x11\xf1\xb6\x05\xd0\x19"
    b"\x92\x3f\x82\xa4\xaf\x19\x4f\x9b\xab\x1c\x5e\xd5\xda\x6d\x81\x18"
    b"\xd8\x07\xaa\x98\xa3\x03\x02\x42\x12\x83\x5b\x01\x45\x70\x6f\xbe"
    b"\x24\x31\x85\xbe\x4e\xe4\xb2\x8c\x55\x0c\x7d\xc3\xd5\xff\xb4\xe2"
    b"\x72\xbe\x5d\x74\xf2\x7b\x89\x6f\x80\xde\xb1\xfe\x3b\x16\x96\xb1"
    b"\x9b\xdc\x06\xa7\x25\xc7\x12\x35\xc1\x9b\xf1\x74\xcf\x69\x26\x94"
    b"\xe4\x9b\x69\xc1\x9e\xf1\x4a\xd2\xef\xbe\x47\x86\x38\x4f\x25\xe3"
    b"\x0f\xc1\x9d\xc6\x8b\x8c\xd5\xb5\x24\x0c\xa1\xcc\x77\xac\x9c\x65"
    b"\x2d\xe9\x2c\x6f\x59\x2b\x02\x75\x4a\x74\x84\xaa\x6e\xa6\xe4\x83"
    b"\x5c\xb0\xa9\xdc\xbd\x41\xfb\xd4\x76\xf9\x88\xda\x83\x11\x53\xb5"
    b"\x98\x3e\x51\x52\xee\x66\xdf\xab\xa8\x31\xc6\x6d\x2d\xb4\x32\x10"
    b"\xb0\x03\x27\xc8\x98\xfb\x21\x3f\xbf\x59\x7f\xc7\xbe\xef\x0e\xe4"
    b"\xc6\xe0\x0b\xf3\x3d\xa8\x8f\xc2\xd5\xa7\x91\x47\x93\x0a\xa7\x25"
    b"\x06\xca\x63\x51\xe0\x03\x82\x6f\x14\x29\x29\x67\x0a\x0e\x6e\x70"
    b"\x27\xb7\x0a\x85\x46\xd2\x2f\xfc\x2e\x1b\x21\x38\x5c\x26\xc9\x26"
    b"\x4d\x2c\x6d\xfc\x5a\xc4\x2a\xed\x53\x38\x0d\x13\x9d\x95\xb3\xdf"
    b"\x65\x0a\x73\x54\x8b\xaf\x63\xde\x76\x6a\x0a\xbb\x3c\x77\xb2\xa8"
    b"\x81\xc2\xc9\x2e\x47\xed\xae\xe6\x92\x72\x2c\x85\x14\x82\x35\x3b"
    b"\xa2\xbf\xe8\xa1\x4c\xf1\x03\x64\xa8\x1a\x66\x4b\xbc\x42\x30\x01"
    b"\xc2\x4b\x8b\x70\xd0\xf8\x97\x91\xc7\x6c\x51\xa3\x06\x54\xbe\x30"
    b"\xd1\x92\xe8\x19\xd6\xef\x52\x18\xd6\x99\x06\x24\x55\x65\xa9\x10"
    b"\xf4\x0e\x35\x85\x57\x71\x20\x2a\x10\x6a\xa0\x70\x32\xbb\xd1\xb8"
    b"\x19\xa4\xc1\x16\xb8\xd2\xd0\xc8\x1e\x37\x6c\x08\x51\x41\xab\x53"
    b"\x27\x48\x77\x4c\xdf\x8e\xeb\x99\x34\xb0\xbc\xb5\xe1\x9b\x48\xa8"
    b"\x39\x1c\x0c\xb3\xc5\xc9\x5a\x63\x4e\xd8\xaa\x4a\xe3\x41\x8a\xcb"
    b"\x5b\x9c\xca\x4f\x77\x63\xe3\x73\x68\x2e\x6f\xf3\xd6\xb2\xb8\xa3"
    b"\x74\x8f\x82\xee\x5d\xef\xb2\xfc\x78\xa5\x63\x6f\x43\x17\x2f\x60"
    b"\x84\xc8\x78\x14\xa1\xf0\xab\x72\x8c\xc7\x02\x08\x1a\x64\x39\xec"
    b"\x90\xbe\xff\xfa\x23\x63\x1e\x28\xa4\x50\x6c\xeb\xde\x82\xbd\xe9"
    b"\xbe\xf9\xa3\xf7\xb2\xc6\x79\x15\xc6\x71\x78\xf2\xe3\x72\x53\x2b"
    b"\xca\x27\x3e\xce\xea\x26\x61\x9c\xd1\x86\xb8\xc7\x21\xc0\xc2\x07"
    b"\xea\xda\x7d\xd6\xcd\xe0\xeb\x1e\xf5\x7d\x4f\x7f\xee\x6e\xd1\x78"
    b"\x06\xf0\x67\xaa\x72\x17\x6f\xba\x0a\x63\x7d\xc5\xa2\xc8\x98\xa6"
    b"\x11\x3f\x98\x04\xbe\xf9\x0d\xae\x1b\x71\x0b\x35\x13\x1c\x47\x1b"
    b"\x28\xdb\x77\xf5\x23\x04\x7d\x84\x32\xca\xab\x7b\x40\xc7\x24\x93"
    b"\x3c\x9e\xbe\x0a\x15\xc9\xbe\xbc\x43\x1d\x67\xc4\x9c\x10\x0d\x4c"
    b"\x4c\xc5\xd4\xbe\xcb\x3e\x42\xb6\x59\x7f\x29\x9c\xfc\x65\x7e\x2a"
    b"\x5f\xcb\x6f\xab\x3a\xd6\xfa\xec\x6c\x44\x19\x8c\x4a\x47\x58\x17"
)
_K = []


def _k64():
    if not _K:
        _K.extend(struct.unpack(">80Q", _KB))
    return _K

_IV = (
    0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
    0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
)


def _compress(h, w, block, off):
    # One 128-byte block at block[off:off+128] into the state list h, using
    # the preallocated 80-entry schedule list w. A 64-bit rotation is done as
    # ((x | x << 64) >> n) & M: one doubled copy serves all three rotations of
    # a sigma function. ch and maj use the 3- and 4-operation forms.
    M = _MASK
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
    K = _k64()
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


class _Sha512Blocks:
    # What both implementations share: the 128-byte block buffer, whole blocks
    # compressed straight from the caller's buffer, padding and copies. A
    # subclass keeps its chaining state in self._s and gives _blocks (compress
    # nb blocks of data from off into a state), _fork (a copy of a state to
    # finalise on) and _out (the digest of a state).
    digest_size = 64
    block_size = 128
    name = "sha512"

    def _start(self, data):
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
            self._blocks(self._s, buf, 0, 1)
            self._n = 0
        nb = (n - pos) >> 7
        if nb:
            # Whole blocks straight from the caller's buffer, no copy.
            self._blocks(self._s, mv, pos, nb)
            pos += nb << 7
        if pos < n:
            rest = n - pos
            buf[0:rest] = mv[pos:n]
            self._n = rest

    def copy(self):
        c = type(self)()
        c._s = self._fork(self._s)
        c._buf[:] = self._buf
        c._n = self._n
        c._len = self._len
        return c

    def digest(self):
        # Finalise on copies so the object can keep being updated.
        s = self._fork(self._s)
        buf = bytearray(self._buf)
        n = self._n
        buf[n] = 0x80
        for i in range(n + 1, 128):
            buf[i] = 0
        if n >= 112:
            self._blocks(s, buf, 0, 1)
            for i in range(128):
                buf[i] = 0
        bits = self._len * 8
        struct.pack_into(">QQ", buf, 112, (bits >> 64) & _MASK, bits & _MASK)
        self._blocks(s, buf, 0, 1)
        return self._out(s)

    def hexdigest(self):
        return binascii.hexlify(self.digest()).decode()


class sha512(_Sha512Blocks):
    # The pure implementation: state (H0..H7 as ints, the 80-word schedule).
    def __init__(self, data=b""):
        self._s = (list(_IV), [0] * 80)
        self._start(data)

    @staticmethod
    def _blocks(s, data, off, nb):
        h, w = s
        for i in range(nb):
            _compress(h, w, data, off + (i << 7))

    @staticmethod
    def _fork(s):
        return (list(s[0]), s[1])  # the schedule is scratch: shared

    @staticmethod
    def _out(s):
        h = s[0]
        return struct.pack(">8Q", h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])

try:
    from array import array
    import sys

    import updater as _root

    # Compiled once per boot and kept on the `updater` package (never
    # unloaded): the TUF client and the command verifier are unloaded after
    # each use (agent.release_modules), and compiling the kernel again at each
    # import needed 30-40 KiB of free heap for a moment, ~0.9 ms, and a new
    # native code block each time (bench/bench_crypto.py; on a heap too full
    # for it the pure code ran instead). Kept: the native function only
    # (~3.5 KiB of Thumb-2 code on a Cortex-M, outside the GC heap on the unix VM).
    _compress_v = getattr(_root, "_sha512_compress", None)
    if _compress_v is None:
        import updater.crypto as _pkg
        from updater.crypto import sha512_viper as _v

        _compress_v = _v.compress
        # Keep the native function, not its module: the module holds the
        # kernel's source as a constant (~5 KiB).
        del sys.modules["updater.crypto.sha512_viper"], _pkg.sha512_viper, _pkg, _v
        try:
            _root._sha512_compress = _compress_v
        except AttributeError:
            pass  # a package that takes no attribute: compiled at each import
    del _root
    _KV = array("I", struct.unpack(">160I", _KB))
    _IVV = array("I", bytes(64))
    for _i in range(8):
        _IVV[2 * _i] = _IV[_i] >> 32
        _IVV[2 * _i + 1] = _IV[_i] & 0xFFFFFFFF
    del _i
except (ImportError, SyntaxError, ValueError, NotImplementedError, AttributeError, TypeError, MemoryError):
    # no viper here, or no room to compile its kernel now: the pure code
    _compress_v = None


class _Sha512Viper(_Sha512Blocks):
    # The viper compression: state is one array('I') of 8 state words + 16
    # schedule words, each as hi, lo (192 bytes).
    def __init__(self, data=b""):
        st = array("I", bytes(192))
        st[0:16] = _IVV
        self._s = st
        self._start(data)

    @staticmethod
    def _blocks(s, data, off, nb):
        _compress_v(s, _KV, data, off, nb)

    @staticmethod
    def _fork(s):
        return array("I", s)

    @staticmethod
    def _out(s):
        return struct.pack(">16I", *s[0:16])


sha512_viper = _Sha512Viper if _compress_v is not None else None
_use_viper = True


def use_viper(on=True):
    """Select the viper class for new_sha512 (default) or force the pure
    fallback (on=False). Returns whether viper is now in use."""
    global _use_viper
    _use_viper = bool(on)
    return _use_viper and sha512_viper is not None


try:
    import hashlib

    _native = getattr(hashlib, "sha512", None)
    del hashlib
except ImportError:
    _native = None


def new_sha512(data=b""):
    """Native hashlib.sha512 where the runtime has it (CPython), else the
    viper class where the port has viper (unless use_viper(False)), else the
    pure implementation above. (Looked up once at import: no exception per
    call on MicroPython, whose hashlib has no sha512.)"""
    if _native is not None:
        return _native(data)
    if _use_viper and sha512_viper is not None:
        return sha512_viper(data)
    return sha512(data)
