"""Can viper field arithmetic make Ed25519 faster on the device? (issue 18)

Ed25519's cost on the VM is the arithmetic mod p = 2^255 - 19: about 2,100
multiplications mod p per verification, done today with MicroPython's C big
integers (one allocation per result). The issue suggests viper field arithmetic
instead, written on 32-bit words so that it ports to Cortex-M (viper integers
are machine words: 32 bits there; 64-bit limbs would not port).

This prints, on the VM, the time of one multiplication mod p:
- viper, 16 limbs of 16 bits, loops (32-bit safe: every product and column sum
  stays below 2^32, high and low halves of each product summed apart);
- viper, the same fully unrolled (generated source, compiled at run time like
  updater/crypto/sha512_viper.py's kernel);
- viper, 10 limbs of 25.5 bits (ref10's radix), products of 52 bits: this
  needs 64-bit viper integers (x64, as this VM), so it does NOT port to a
  32-bit MCU; printed to show what the issue's "~0.25 ms with viper field
  arithmetic" experiment relied on;
against the anchor measured in the same run: one big-integer `x * y % p`.
Each viper result is checked against the big-integer product first.

Run: .venv/bin/python bench/bench_field_viper.py
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from host_tools import mpvm  # noqa: E402

VM = r'''
import micropython, time, random
from array import array

LOOP = """
@micropython.viper
def fmul(o: ptr32, a: ptr32, b: ptr32, t: ptr32):
    k = 0
    while k < 33:
        t[k] = 0
        k += 1
    i = 0
    while i < 16:
        ai = uint(a[i])
        j = 0
        while j < 16:
            p = ai * uint(b[j])
            k = i + j
            t[k] = uint(t[k]) + (p & 0xffff)
            t[k + 1] = uint(t[k + 1]) + (p >> 16)
            j += 1
        i += 1
    c = uint(0)
    k = 0
    while k < 32:
        v = uint(t[k]) + c
        t[k] = v & 0xffff
        c = v >> 16
        k += 1
    c = uint(0)
    k = 0
    while k < 16:
        v = uint(t[k]) + uint(38) * uint(t[k + 16]) + c
        o[k] = v & 0xffff
        c = v >> 16
        k += 1
    c = c * 38
    k = 0
    while k < 16:
        v = uint(o[k]) + c
        o[k] = v & 0xffff
        c = v >> 16
        k += 1
"""


def unrolled():
    src = ["@micropython.viper", "def fmul(o: ptr32, a: ptr32, b: ptr32, t: ptr32):"]
    for i in range(16):
        src.append("    a%d = uint(a[%d]); b%d = uint(b[%d])" % (i, i, i, i))
    src.append("    c = uint(0)")
    for k in range(31):
        src.append("    lo = c; hi = uint(0)")
        for i in range(16):
            if 0 <= k - i < 16:
                src.append("    p = a%d * b%d; lo += p & 0xffff; hi += p >> 16" % (i, k - i))
        src.append("    r%d = lo & 0xffff; c = (lo >> 16) + hi" % k)
    src.append("    r31 = c & 0xffff; r32 = c >> 16")
    src.append("    c = uint(0)")
    for k in range(16):
        extra = " + uint(38) * r32" if k == 0 else ""
        src.append("    v = r%d + uint(38) * r%d + c%s; o[%d] = v & 0xffff; c = v >> 16" % (k, k + 16, extra, k))
    src.append("    c = c * 38")
    src.append("    k = 0")
    src.append("    while k < 16:")
    src.append("        v = uint(o[k]) + c; o[k] = v & 0xffff; c = v >> 16; k += 1")
    return "\n".join(src)


def wide():
    src = ["@micropython.viper", "def fmul(o: ptr32, a: ptr32, b: ptr32, t: ptr32):"]
    for i in range(10):
        src.append("    a%d = int(a[%d]); b%d = int(b[%d])" % (i, i, i, i))
    for k in range(10):
        terms = []
        for i in range(10):
            j = (k - i) % 10
            coef = (2 if i & 1 and j & 1 else 1) * (19 if i + j >= 10 else 1)
            terms.append("a%d * b%d%s" % (i, j, "" if coef == 1 else " * %d" % coef))
        src.append("    h%d = " % k + " + ".join(terms))
    src.append("    c = 0")
    for k in range(10):
        bits = 26 - (k & 1)
        src.append("    h%d += c; c = h%d >> %d; h%d &= %d" % (k, k, bits, k, (1 << bits) - 1))
    src.append("    h0 += c * 19; c = h0 >> 26; h0 &= 67108863; h1 += c")
    for k in range(10):
        src.append("    o[%d] = h%d" % (k, k))
    return "\n".join(src)


SHIFTS = (0, 26, 51, 77, 102, 128, 153, 179, 204, 230)


def wide_limbs(x):
    return array("I", [(x >> SHIFTS[i]) & ((1 << (26 - (i & 1))) - 1) for i in range(10)])


def wide_value(a):
    return sum(a[i] << SHIFTS[i] for i in range(10))


@micropython.viper
def viper_bits() -> int:
    x = 1 << 20
    return 64 if (x * x) >> 40 == 1 else 32


P = 2**255 - 19


def limbs(x):
    return array("I", [(x >> (16 * i)) & 0xFFFF for i in range(16)])


def value(a):
    x = 0
    for i in range(15, -1, -1):
        x = (x << 16) | a[i]
    return x


def rnd():
    return sum(random.getrandbits(32) << (32 * i) for i in range(8)) % P


def per_call_us(f, *args):
    n = 5000
    t0 = time.ticks_us()
    for _ in range(n):
        f(*args)
    return time.ticks_diff(time.ticks_us(), t0) / n


def bigint_us(x, y):
    # The anchor as ed25519.py writes it: x * y % p inline, on locals.
    n = 5000
    p = P
    t0 = time.ticks_us()
    for _ in range(n):
        z = x * y % p
    return time.ticks_diff(time.ticks_us(), t0) / n


x, y = rnd(), rnd()
print("RESULT bigint %.3f" % bigint_us(x, y))
variants = [("loop", LOOP, limbs, value), ("unrolled", unrolled(), limbs, value)]
if viper_bits() == 64:
    variants.append(("wide64", wide(), wide_limbs, wide_value))
for name, src, to, back in variants:
    g = {"micropython": micropython}
    exec(src, g)
    f = g["fmul"]
    o, t = array("I", bytes(64)), array("I", bytes(34 * 4))
    for _ in range(300):
        u, v = rnd(), rnd()
        f(o, to(u), to(v), t)
        assert back(o) % P == u * v % P, name
    print("RESULT %s %.3f" % (name, per_call_us(f, o, to(x), to(y), t)))
'''


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "field.py"
        script.write_text(VM)
        proc = subprocess.run(mpvm.vm_command(str(script), heap="256k"), env=mpvm.vm_env([REPO]),
                              capture_output=True, text=True, timeout=300)
    res = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            _, name, us = line.split()
            res[name] = float(us)
    if "unrolled" not in res:
        raise SystemExit(proc.stdout + proc.stderr)
    a = res["bigint"]
    for name in ("loop", "unrolled"):
        print(f"multiplication mod 2^255-19, viper on 32-bit-safe 16-bit limbs ({name}): {res[name]:.2f} us; "
              f"anchor big-integer x * y % p on the same VM {a:.2f} us; ratio {res[name] / a:.2f}")
    if "wide64" in res:
        print(f"multiplication mod 2^255-19, viper on 64-bit words (25.5-bit limbs; x64 only, does not port to a "
              f"32-bit MCU): {res['wide64']:.2f} us; anchor big-integer x * y % p on the same VM {a:.2f} us; "
              f"ratio {res['wide64'] / a:.2f}")


if __name__ == "__main__":
    main()
