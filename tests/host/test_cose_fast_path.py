"""The collector's COSE fast path (``cose._parse_canonical``) reads the profile's one
byte layout directly; it must accept exactly the messages the full CBOR parser
(``cose.parse_full``) accepts, with the same fields, and leave every other input
to the full parser (which names the fault). Hypothesis, valid and mutated."""
from __future__ import annotations

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from host_tools.collector import cose


def full(data: bytes) -> cose.Sealed | None:
    try:
        return cose.parse_full(data)
    except cose.CoseError:
        return None


def encode(kid: bytes, piv: bytes, ct: bytes) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(16, [cose.PROTECTED, {4: kid, 6: piv}, ct]))


messages = st.builds(
    encode,
    st.binary(min_size=0, max_size=18),
    st.one_of(st.integers(0, cose.MAX_SEQ).map(cose.partial_iv), st.binary(min_size=0, max_size=6)),
    st.binary(min_size=0, max_size=900),
)


def head(n: int, form: int) -> bytes:
    """A byte-string head for length n: form 0 minimal, 1 one-byte length, 2 two-byte."""
    if form == 0:
        return cbor2.dumps(bytes(n))[:-n or None]
    return bytes([0x58, n]) if form == 1 and n < 256 else bytes([0x59]) + n.to_bytes(2, "big")


@st.composite
def hand_built(draw) -> bytes:
    """The layout assembled part by part, with non-minimal heads, leading-zero Partial
    IVs, swapped or extra map entries: deterministic-encoding faults cbor2 never writes."""
    kid = draw(st.binary(min_size=0, max_size=18))
    piv = draw(st.one_of(st.binary(min_size=0, max_size=6),
                         st.binary(min_size=1, max_size=4).map(lambda b: b"\x00" + b)))  # not minimal
    ct = draw(st.binary(min_size=0, max_size=300))
    f = [draw(st.sampled_from([0, 0, 0, 1, 2])) for _ in range(3)]
    k = b"\x04" + head(len(kid), f[0]) + kid
    v = b"\x06" + head(len(piv), f[1]) + piv
    entries = draw(st.sampled_from([k + v, k + v, k + v, v + k, k, k + v + b"\x01\x40"]))
    count = {k + v: 2, v + k: 2, k: 1}.get(entries, 3)
    return (b"\xd0\x83\x43" + cose.PROTECTED + bytes([0xa0 + count]) + entries
            + head(len(ct), f[2]) + ct)


@st.composite
def mutated(draw) -> bytes:
    m = bytearray(draw(messages))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.integers(0, 3))
        i = draw(st.integers(0, max(0, len(m) - 1)))
        if op == 0 and m:
            m[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:
            m.insert(i, draw(st.integers(0, 255)))
        elif op == 2 and m:
            del m[i]
        else:
            m = m[:i]
    return bytes(m)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(messages, mutated(), hand_built()))
def test_fast_path_never_accepts_what_the_full_parser_refuses(data):
    if len(data) > cose.MAX_MESSAGE:
        return
    fast = cose._parse_canonical(data)
    if fast is not None:
        assert full(data) == fast
    else:
        # refused by the fast path: parse() gives the full parser's answer
        want = full(data)
        if want is None:
            try:
                cose.parse(data)
            except cose.CoseError:
                pass
            else:
                raise AssertionError("parse accepted what the full parser refuses")
        else:
            assert cose.parse(data) == want


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=1, max_size=16), st.integers(0, cose.MAX_SEQ), st.binary(min_size=8, max_size=900))
def test_every_valid_message_takes_the_fast_path(kid, seq, ct):
    data = encode(kid, cose.partial_iv(seq), ct)
    if len(data) > cose.MAX_MESSAGE:
        return
    assert cose._parse_canonical(data) == cose.parse_full(data) == cose.Sealed(kid, cose.partial_iv(seq), ct)
