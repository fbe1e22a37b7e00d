"""The viper SHA-512 kernel under 32-bit machine-word semantics, on CPython.

The VM here is x64, where viper integers are 64 bits wide; a Cortex-M board
has 32-bit viper integers. updater/crypto/sha512_viper.py is written to give
the same answer at both widths. This test runs its source on CPython with
`uint` replaced by a class whose arithmetic wraps at 32 bits (as a 32-bit
viper `uint` does: +, <<, ~ modulo 2^32, logical >>, unsigned compares) and
checks the digests against hashlib, so a carry or mask that only works with
64-bit words fails here.
"""
from __future__ import annotations

import ast
import hashlib
import random
import struct
import types
from array import array
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "updater" / "crypto" / "sha512_viper.py"
_W = 0xFFFFFFFF


class U32:
    """A 32-bit viper `uint`."""

    __slots__ = ("v",)

    def __init__(self, v):
        self.v = int(v) & _W

    def __index__(self):
        return self.v

    __int__ = __index__

    def _o(self, other):
        return other.v if isinstance(other, U32) else int(other) & _W

    def __add__(self, o):
        return U32(self.v + self._o(o))

    __radd__ = __add__

    def __sub__(self, o):
        return U32(self.v - self._o(o))

    def __and__(self, o):
        return U32(self.v & self._o(o))

    __rand__ = __and__

    def __or__(self, o):
        return U32(self.v | self._o(o))

    __ror__ = __or__

    def __xor__(self, o):
        return U32(self.v ^ self._o(o))

    __rxor__ = __xor__

    def __lshift__(self, n):
        return U32(self.v << int(n))

    def __rshift__(self, n):
        return U32(self.v >> int(n))

    def __invert__(self):
        return U32(~self.v)

    def __lt__(self, o):
        return self.v < self._o(o)

    def __gt__(self, o):
        return self.v > self._o(o)

    def __le__(self, o):
        return self.v <= self._o(o)

    def __ge__(self, o):
        return self.v >= self._o(o)

    def __eq__(self, o):
        return self.v == self._o(o)

    def __hash__(self):
        return hash(self.v)


def _kernel_source() -> str:
    """The KERNEL string sha512_viper.py compiles on the board."""
    for node in ast.parse(SRC.read_text()).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["KERNEL"]:
            return node.value.value
    raise AssertionError("no KERNEL in sha512_viper.py")


def _kernel():
    mp = types.ModuleType("micropython")
    mp.viper = lambda f: f
    ns = {"micropython": mp, "uint": U32, "ptr32": object, "ptr8": object, "__name__": "sha512_viper_32"}
    exec(compile(_kernel_source(), str(SRC), "exec"), ns)  # noqa: S102 - our own device source
    return ns["compress"]


def _sha512_32(msg: bytes) -> bytes:
    from updater.crypto import sha512 as mod

    compress = _kernel()
    kb = mod._KB  # noqa: SLF001 - the module's own constant table
    k = array("I", struct.unpack(">160I", kb))
    iv = struct.pack(">8Q", *mod._IV)  # noqa: SLF001
    st = array("I", struct.unpack(">16I", iv) + (0,) * 32)
    n = len(msg)
    padded = bytearray(msg) + b"\x80"
    while len(padded) % 128 != 112:
        padded.append(0)
    padded += (n * 8).to_bytes(16, "big")
    compress(st, k, padded, 0, len(padded) // 128)
    return struct.pack(">16I", *st[:16])


def test_32bit_semantics_match_hashlib():
    rng = random.Random(32)
    lengths = [0, 1, 3, 111, 112, 127, 128, 129, 239, 240, 256] + [rng.randrange(600) for _ in range(6)]
    for n in lengths:
        m = rng.randbytes(n)
        assert _sha512_32(m) == hashlib.sha512(m).digest(), n


def test_32bit_emulation_is_strict():
    # The shim itself wraps like 32-bit hardware.
    a = U32(0xFFFFFFFF)
    assert (a + 1).v == 0 and (a << 4).v == 0xFFFFFFF0 and (~U32(0)).v == _W and (a >> 31).v == 1
