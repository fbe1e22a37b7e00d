# SHA-512 compression for MicroPython's viper emitter, on 32-bit words.
#
# Every 64-bit word is a (high, low) pair of 32-bit words, so the code ports
# to 32-bit microcontrollers where a viper integer is one machine word. On a
# 64-bit port (the unix VM) viper integers are 64 bits wide: every sum and
# left shift is therefore masked with M = 0xFFFFFFFF (read from the state
# array, since a 32-bit viper cannot hold the literal as a small int); on a
# 32-bit port the mask is a no-op. Low-word carries are detected with
# unsigned comparisons (sum < addend after masking), high words simply add.
#
# compress(st, w, block, off): st is array("I") of 17 words (H0..H7 as
# high/low pairs, then M), w array("I") of 160 words (the schedule), block a
# buffer holding the 128 bytes at off. Importing this module raises
# ImportError on CPython and SyntaxError/ValueError on a port without the
# native emitter; updater.crypto.sha512 then uses its pure code. K (the
# round constants) is provided by updater.crypto.sha512.
import micropython

K = None  # the round constants as 160 little-endian 32-bit words, set by sha512.py


@micropython.viper
def compress(st: ptr32, w: ptr32, b: ptr8, off: int):
    M = uint(st[16])
    k = ptr32(K)
    i = 0
    j = off
    while i < 32:
        w[i] = (uint(b[j]) << 24) | (uint(b[j + 1]) << 16) | (uint(b[j + 2]) << 8) | uint(b[j + 3])
        i += 1
        j += 4
    while i < 160:
        # w[t] = s1(w[t-2]) + w[t-7] + s0(w[t-15]) + w[t-16]
        xh = uint(w[i - 30])
        xl = uint(w[i - 29])
        yh = uint(w[i - 4])
        yl = uint(w[i - 3])
        sl = (((xl >> 1) | (xh << 31)) ^ ((xl >> 8) | (xh << 24)) ^ ((xl >> 7) | (xh << 25))) & M
        tl = (((yl >> 19) | (yh << 13)) ^ ((yh >> 29) | (yl << 3)) ^ ((yl >> 6) | (yh << 26))) & M
        hi = ((((xh >> 1) | (xl << 31)) ^ ((xh >> 8) | (xl << 24)) ^ (xh >> 7))
              + (((yh >> 19) | (yl << 13)) ^ ((yl >> 29) | (yh << 3)) ^ (yh >> 6))
              + uint(w[i - 32]) + uint(w[i - 14]))
        lo = (uint(w[i - 31]) + sl) & M
        if lo < sl:
            hi += 1
        lo = (lo + tl) & M
        if lo < tl:
            hi += 1
        x = uint(w[i - 13])
        lo = (lo + x) & M
        if lo < x:
            hi += 1
        w[i] = hi & M
        w[i + 1] = lo
        i += 2
    ah = uint(st[0])
    al = uint(st[1])
    bh = uint(st[2])
    bl = uint(st[3])
    ch = uint(st[4])
    cl = uint(st[5])
    dh = uint(st[6])
    dl = uint(st[7])
    eh = uint(st[8])
    el = uint(st[9])
    fh = uint(st[10])
    fl = uint(st[11])
    gh = uint(st[12])
    gl = uint(st[13])
    hh = uint(st[14])
    hl = uint(st[15])
    t = 0
    while t < 160:
        # t1 = h + S1(e) + ch(e, f, g) + K[t] + w[t]
        x = (((el >> 14) | (eh << 18)) ^ ((el >> 18) | (eh << 14)) ^ ((eh >> 9) | (el << 23))) & M
        t1h = (hh + ((((eh >> 14) | (el << 18)) ^ ((eh >> 18) | (el << 14)) ^ ((el >> 9) | (eh << 23))) & M)
               + (gh ^ (eh & (fh ^ gh))) + uint(k[t]) + uint(w[t]))
        t1l = (hl + x) & M
        if t1l < x:
            t1h += 1
        x = gl ^ (el & (fl ^ gl))
        t1l = (t1l + x) & M
        if t1l < x:
            t1h += 1
        x = uint(k[t + 1])
        t1l = (t1l + x) & M
        if t1l < x:
            t1h += 1
        x = uint(w[t + 1])
        t1l = (t1l + x) & M
        if t1l < x:
            t1h += 1
        # t2 = S0(a) + maj(a, b, c)
        x = (((al >> 28) | (ah << 4)) ^ ((ah >> 2) | (al << 30)) ^ ((ah >> 7) | (al << 25))) & M
        t2h = ((((ah >> 28) | (al << 4)) ^ ((al >> 2) | (ah << 30)) ^ ((al >> 7) | (ah << 25))) & M) + (
            (ah & bh) | (ch & (ah | bh)))
        y = (al & bl) | (cl & (al | bl))
        t2l = (x + y) & M
        if t2l < y:
            t2h += 1
        # e = d + t1, a = t1 + t2; the others shift down one place
        x = (dl + t1l) & M
        y = dh + t1h
        if x < t1l:
            y += 1
        hh = gh
        dh = ch
        hl = gl
        dl = cl
        gh = fh
        ch = bh
        gl = fl
        cl = bl
        fh = eh
        bh = ah
        fl = el
        bl = al
        eh = y & M
        el = x
        al = (t1l + t2l) & M
        ah = t1h + t2h
        if al < t2l:
            ah += 1
        ah &= M
        t += 2
    w[0] = ah
    w[1] = al
    w[2] = bh
    w[3] = bl
    w[4] = ch
    w[5] = cl
    w[6] = dh
    w[7] = dl
    w[8] = eh
    w[9] = el
    w[10] = fh
    w[11] = fl
    w[12] = gh
    w[13] = gl
    w[14] = hh
    w[15] = hl
    i = 0
    while i < 16:
        x = uint(w[i + 1])
        lo = (uint(st[i + 1]) + x) & M
        hi = uint(st[i]) + uint(w[i])
        if lo < x:
            hi += 1
        st[i] = hi & M
        st[i + 1] = lo
        i += 2
