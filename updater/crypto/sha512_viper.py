# SHA-512 compression for MicroPython's viper emitter, on 32-bit words.
#
# Imported under try/except by updater.crypto.sha512: on CPython (no
# `micropython` module), on a port without the viper emitter or without the
# heap to compile the kernel, the import fails and the pure code is used.
#
# Every 64-bit word is a (hi, lo) pair of 32-bit halves. Viper integers are
# machine words: 32 bits on a Cortex-M, 64 bits on the x64 unix VM. The code
# is written for 32 bits and masks with M = 0xFFFFFFFF after each addition
# and left shift so it gives the same answer on a 64-bit port (the masks are
# no-ops on 32 bits). All arithmetic is on `uint`, so right shifts are
# logical on both. In the rounds a carry is computed without a branch (a
# data-dependent branch per addition mispredicts half the time):
# s = (a + b) & M, carry = ((a & b) | ((a | b) & ~s)) >> 31 (the top-bit
# carry rule; a, b < 2^32, so the & with (a | b) clears the bits above 31
# that ~s sets on a 64-bit port). The 8 per-block state additions use an
# unsigned compare (s < a).
#
# State layout (one array('I') of 48 words per hash object, 192 bytes):
#   st[0..15]  H0..H7 as hi, lo pairs
#   st[16..47] the 16-word message schedule ring W[t & 15] as hi, lo pairs
# k: array('I') of 160 words, K0..K79 as hi, lo pairs (built once by sha512.py).
#
# The kernel is compiled on the board, at import, by the port's own native
# emitter (exec of KERNEL): viper code in a .py file compiles to .mpy only for
# one architecture (mpy-cross -march), and the slots carry one portable .mpy
# for every board. Compiling it needs 30-40 KiB of free heap for a moment
# (MemoryError: sha512.py keeps the pure code); afterwards only the native
# function stays (sha512.py keeps it on the `updater` package, so it is
# compiled once per boot): KERNEL is a constant of this module's top-level
# code, freed once the import is done.
import micropython  # ImportError on CPython: sha512.py uses the pure code

KERNEL = """
@micropython.viper
def compress(st: ptr32, k: ptr32, data: ptr8, off: int, nblocks: int):
    M = uint(0xFFFF)
    M = (M << 16) | M
    while nblocks > 0:
        # Load the 16 words of the block big-endian into the ring.
        i = 0
        while i < 32:
            o = off + i * 4
            st[16 + i] = (uint(data[o]) << 24) | (uint(data[o + 1]) << 16) | (uint(data[o + 2]) << 8) | uint(data[o + 3])
            i += 1
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
        while t < 80:
            j = 16 + ((t & 15) << 1)
            if t > 15:
                # W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16]
                p = 16 + (((t - 2) & 15) << 1)
                xh = uint(st[p])
                xl = uint(st[p + 1])
                # s1: ROTR19 ^ ROTR61 ^ SHR6
                s1h = ((xh >> 19) | (xl << 13)) ^ ((xl >> 29) | (xh << 3)) ^ (xh >> 6)
                s1l = ((xl >> 19) | (xh << 13)) ^ ((xh >> 29) | (xl << 3)) ^ ((xl >> 6) | (xh << 26))
                s1h &= M
                s1l &= M
                p = 16 + (((t - 15) & 15) << 1)
                xh = uint(st[p])
                xl = uint(st[p + 1])
                # s0: ROTR1 ^ ROTR8 ^ SHR7
                s0h = ((xh >> 1) | (xl << 31)) ^ ((xh >> 8) | (xl << 24)) ^ (xh >> 7)
                s0l = ((xl >> 1) | (xh << 31)) ^ ((xl >> 8) | (xh << 24)) ^ ((xl >> 7) | (xh << 25))
                s0h &= M
                s0l &= M
                p = 16 + (((t - 7) & 15) << 1)
                # W[t-16] is the slot j itself.
                x = uint(st[j + 1])
                wl = (x + s1l) & M
                wh = uint(st[j]) + s1h + (((x & s1l) | ((x | s1l) & ~wl)) >> 31)
                x = uint(st[p + 1])
                y = (wl + x) & M
                wh += uint(st[p]) + (((wl & x) | ((wl | x) & ~y)) >> 31)
                wl = y
                y = (wl + s0l) & M
                wh += s0h + (((wl & s0l) | ((wl | s0l) & ~y)) >> 31)
                wl = y
                st[j] = wh & M
                st[j + 1] = wl
            # T1 = h + S1(e) + Ch(e, f, g) + K[t] + W[t]
            # S1: ROTR14 ^ ROTR18 ^ ROTR41
            xh = ((eh >> 14) | (el << 18)) ^ ((eh >> 18) | (el << 14)) ^ ((el >> 9) | (eh << 23))
            xl = ((el >> 14) | (eh << 18)) ^ ((el >> 18) | (eh << 14)) ^ ((eh >> 9) | (el << 23))
            xl &= M
            t1l = (hl + xl) & M
            t1h = hh + xh + (((hl & xl) | ((hl | xl) & ~t1l)) >> 31)
            x = gl ^ (el & (fl ^ gl))
            y = (t1l + x) & M
            t1h += (gh ^ (eh & (fh ^ gh))) + (((t1l & x) | ((t1l | x) & ~y)) >> 31)
            t1l = y
            x = uint(k[(t << 1) + 1])
            y = (t1l + x) & M
            t1h += uint(k[t << 1]) + (((t1l & x) | ((t1l | x) & ~y)) >> 31)
            t1l = y
            x = uint(st[j + 1])
            y = (t1l + x) & M
            t1h += uint(st[j]) + (((t1l & x) | ((t1l | x) & ~y)) >> 31)
            t1l = y
            t1h &= M
            # T2 = S0(a) + Maj(a, b, c); S0: ROTR28 ^ ROTR34 ^ ROTR39
            xh = ((ah >> 28) | (al << 4)) ^ ((al >> 2) | (ah << 30)) ^ ((al >> 7) | (ah << 25))
            xl = ((al >> 28) | (ah << 4)) ^ ((ah >> 2) | (al << 30)) ^ ((ah >> 7) | (al << 25))
            xl &= M
            x = (al & bl) | (cl & (al | bl))
            t2l = (xl + x) & M
            t2h = xh + ((ah & bh) | (ch & (ah | bh))) + (((xl & x) | ((xl | x) & ~t2l)) >> 31)
            hh = gh
            hl = gl
            gh = fh
            gl = fl
            fh = eh
            fl = el
            # e = d + T1
            y = (dl + t1l) & M
            eh = (dh + t1h + (((dl & t1l) | ((dl | t1l) & ~y)) >> 31)) & M
            el = y
            dh = ch
            dl = cl
            ch = bh
            cl = bl
            bh = ah
            bl = al
            # a = T1 + T2
            y = (t1l + t2l) & M
            ah = (t1h + t2h + (((t1l & t2l) | ((t1l | t2l) & ~y)) >> 31)) & M
            al = y
            t += 1
        # H += working variables (the ring is free until the next block loads it)
        st[16] = ah
        st[17] = al
        st[18] = bh
        st[19] = bl
        st[20] = ch
        st[21] = cl
        st[22] = dh
        st[23] = dl
        st[24] = eh
        st[25] = el
        st[26] = fh
        st[27] = fl
        st[28] = gh
        st[29] = gl
        st[30] = hh
        st[31] = hl
        i = 0
        while i < 16:
            x = uint(st[i + 17])
            y = (uint(st[i + 1]) + x) & M
            h = uint(st[i]) + uint(st[i + 16])
            if y < x:
                h += 1
            st[i] = h
            st[i + 1] = y
            i += 2
        off += 128
        nblocks -= 1
"""
_g = {"micropython": micropython}
exec(KERNEL, _g)
compress = _g["compress"]
del KERNEL, _g
