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

_K = (
    0x428A2F98D728AE22, 0x7137449123EF65CD, 0xB5C0FBCFEC4D3B2F, 0xE9B5DBA58189DBBC,
    0x3956C25BF348B538, 0x59F111F1B605D019, 0x923F82A4AF194F9B, 0xAB1C5ED5DA6D8118,
    0xD807AA98A3030242, 0x12835B0145706FBE, 0x243185BE4EE4B28C, 0x550C7DC3D5FFB4E2,
    0x72BE5D74F27B896F, 0x80DEB1FE3B1696B1, 0x9BDC06A725C71235, 0xC19BF174CF692694,
    0xE49B69C19EF14AD2, 0xEFBE4786384F25E3, 0x0FC19DC68B8CD5B5, 0x240CA1CC77AC9C65,
    0x2DE92C6F592B0275, 0x4A7484AA6EA6E483, 0x5CB0A9DCBD41FBD4, 0x76F988DA831153B5,
    0x983E5152EE66DFAB, 0xA831C66D2DB43210, 0xB00327C898FB213F, 0xBF597FC7BEEF0EE4,
    0xC6E00BF33DA88FC2, 0xD5A79147930AA725, 0x06CA6351E003826F, 0x142929670A0E6E70,
    0x27B70A8546D22FFC, 0x2E1B21385C26C926, 0x4D2C6DFC5AC42AED, 0x53380D139D95B3DF,
    0x650A73548BAF63DE, 0x766A0ABB3C77B2A8, 0x81C2C92E47EDAEE6, 0x92722C851482353B,
    0xA2BFE8A14CF10364, 0xA81A664BBC423001, 0xC24B8B70D0F89791, 0xC76C51A30654BE30,
    0xD192E819D6EF5218, 0xD69906245565A910, 0xF40E35855771202A, 0x106AA07032BBD1B8,
    0x19A4C116B8D2D0C8, 0x1E376C085141AB53, 0x2748774CDF8EEB99, 0x34B0BCB5E19B48A8,
    0x391C0CB3C5C95A63, 0x4ED8AA4AE3418ACB, 0x5B9CCA4F7763E373, 0x682E6FF3D6B2B8A3,
    0x748F82EE5DEFB2FC, 0x78A5636F43172F60, 0x84C87814A1F0AB72, 0x8CC702081A6439EC,
    0x90BEFFFA23631E28, 0xA4506CEBDE82BDE9, 0xBEF9A3F7B2C67915, 0xC67178F2E372532B,
    0xCA273ECEEA26619C, 0xD186B8C721C0C207, 0xEADA7DD6CDE0EB1E, 0xF57D4F7FEE6ED178,
    0x06F067AA72176FBA, 0x0A637DC5A2C898A6, 0x113F9804BEF90DAE, 0x1B710B35131C471B,
    0x28DB77F523047D84, 0x32CAAB7B40C72493, 0x3C9EBE0A15C9BEBC, 0x431D67C49C100D4C,
    0x4CC5D4BECB3E42B6, 0x597F299CFC657E2A, 0x5FCB6FAB3AD6FAEC, 0x6C44198C4A475817,
)

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
    K = _K
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
            _compress(self._h, self._w, buf, 0)
            self._n = 0
        h = self._h
        w = self._w
        # Whole blocks straight from the caller's buffer, no copy.
        while n - pos >= 128:
            _compress(h, w, mv, pos)
            pos += 128
        if pos < n:
            rest = n - pos
            buf[0:rest] = mv[pos:n]
            self._n = rest

    def copy(self):
        c = sha512()
        c._h = list(self._h)
        c._buf[:] = self._buf
        c._n = self._n
        c._len = self._len
        return c

    def digest(self):
        # Finalise on copies so the object can keep being updated.
        h = list(self._h)
        w = self._w
        buf = bytearray(self._buf)
        n = self._n
        buf[n] = 0x80
        for i in range(n + 1, 128):
            buf[i] = 0
        if n >= 112:
            _compress(h, w, buf, 0)
            for i in range(128):
                buf[i] = 0
        bits = self._len * 8
        struct.pack_into(">QQ", buf, 112, (bits >> 64) & _MASK, bits & _MASK)
        _compress(h, w, buf, 0)
        return struct.pack(">8Q", h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])

    def hexdigest(self):
        return binascii.hexlify(self.digest()).decode()


try:
    from array import array
    from updater.crypto import sha512_viper as _v

    _compress_v = _v.compress
    _KV = array("I", bytes(640))
    for _i in range(80):
        _KV[2 * _i] = _K[_i] >> 32
        _KV[2 * _i + 1] = _K[_i] & 0xFFFFFFFF
    _IVV = array("I", bytes(64))
    for _i in range(8):
        _IVV[2 * _i] = _IV[_i] >> 32
        _IVV[2 * _i + 1] = _IV[_i] & 0xFFFFFFFF
    del _v, _i
except (ImportError, SyntaxError, ValueError, NotImplementedError, AttributeError, TypeError):
    _compress_v = None


class _Sha512Viper:
    digest_size = 64
    block_size = 128
    name = "sha512"

    def __init__(self, data=b""):
        # st: 8 state words + 16 schedule words, each as hi, lo (192 bytes).
        st = array("I", bytes(192))
        st[0:16] = _IVV
        self._st = st
        self._buf = bytearray(128)
        self._n = 0
        self._len = 0
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
            _compress_v(self._st, _KV, buf, 0, 1)
            self._n = 0
        nb = (n - pos) >> 7
        if nb:
            # Whole blocks straight from the caller's buffer, one call.
            _compress_v(self._st, _KV, mv, pos, nb)
            pos += nb << 7
        if pos < n:
            rest = n - pos
            buf[0:rest] = mv[pos:n]
            self._n = rest

    def copy(self):
        c = _Sha512Viper()
        c._st[0:16] = self._st[0:16]
        c._buf[:] = self._buf
        c._n = self._n
        c._len = self._len
        return c

    def digest(self):
        # Finalise on copies so the object can keep being updated.
        st = array("I", self._st)
        buf = bytearray(self._buf)
        n = self._n
        buf[n] = 0x80
        for i in range(n + 1, 128):
            buf[i] = 0
        if n >= 112:
            _compress_v(st, _KV, buf, 0, 1)
            for i in range(128):
                buf[i] = 0
        bits = self._len * 8
        struct.pack_into(">QQ", buf, 112, (bits >> 64) & _MASK, bits & _MASK)
        _compress_v(st, _KV, buf, 0, 1)
        return struct.pack(">16I", *st[0:16])

    def hexdigest(self):
        return binascii.hexlify(self.digest()).decode()


sha512_viper = _Sha512Viper if _compress_v is not None else None
_use_viper = True


def use_viper(on=True):
    """Select the viper class for new_sha512 (default) or force the pure
    fallback (on=False). Returns whether viper is now in use."""
    global _use_viper
    _use_viper = bool(on)
    return _use_viper and sha512_viper is not None


def new_sha512(data=b""):
    """Native hashlib.sha512 where the runtime has it (CPython), else the
    viper class where the port has viper (unless use_viper(False)), else the
    pure implementation above."""
    try:
        import hashlib

        return hashlib.sha512(data)
    except (ImportError, AttributeError):
        if _use_viper and sha512_viper is not None:
            return sha512_viper(data)
        return sha512(data)
