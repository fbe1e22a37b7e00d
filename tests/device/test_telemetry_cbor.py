# CBOR encoder/decoder: round trips, known encodings (RFC 8949 appendix A),
# and a table of malformed inputs that must give a clean CBORDecodeError.
import binascii

import devtest
from agent.telemetry import cbor
from agent.telemetry.cbor import CBORDecodeError, Tag


def h(s):
    return binascii.unhexlify(s.replace(" ", ""))


# (value, expected encoding) from RFC 8949 appendix A (deterministic subset).
KNOWN = [
    (0, "00"), (1, "01"), (10, "0a"), (23, "17"), (24, "1818"), (25, "1819"),
    (100, "1864"), (1000, "1903e8"), (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"), (18446744073709551615, "1bffffffffffffffff"),
    (-1, "20"), (-10, "29"), (-100, "3863"), (-1000, "3903e7"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (1.5, "fa3fc00000"), (100000.0, "fa47c35000"), (1.1, "fb3ff199999999999a"),
    (-4.1, "fbc010666666666666"), (1.0e300, "fb7e37e43c8800759c"),
    (False, "f4"), (True, "f5"), (None, "f6"),
    (b"", "40"), (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"), ("a", "6161"), ("IETF", "6449455446"), ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ([], "80"), ([1, 2, 3], "83010203"), ([1, [2, 3], [4, 5]], "8301820203820405"),
    ({}, "a0"), ({1: 2, 3: 4}, "a201020304"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (Tag(1, 1363896240), "c11a514b67b0"),
    (Tag(16, [b"\xa1\x01\x0a", {}, b""]), "d08343a1010aa040"),
]


def test_known_encodings():
    for value, enc in KNOWN:
        got = cbor.dumps(value)
        assert got == h(enc), "encode %r -> %s, want %s" % (value, binascii.hexlify(got), enc)
        assert cbor.loads(h(enc)) == value, "decode %s" % enc


def test_map_keys_sorted_deterministically():
    # Same bytes whatever the dict order (MicroPython dicts are unordered).
    d1 = {"t": 1, "seq": 2, "hr": 3, 4: 5, 6: 7}
    d2 = {}
    for k in (6, "hr", 4, "seq", "t"):
        d2[k] = d1[k]
    assert cbor.dumps(d1) == cbor.dumps(d2)
    assert cbor.dumps({6: b"x", 4: b"y"}) == h("a2044179064178")


def test_decode_half_single_double():
    assert cbor.loads(h("f93c00")) == 1.0
    assert cbor.loads(h("f93e00")) == 1.5
    assert cbor.loads(h("f97bff")) == 65504.0
    assert cbor.loads(h("f90001")) == 5.960464477539063e-08
    assert cbor.loads(h("f9c400")) == -4.0
    assert cbor.loads(h("f97c00")) == float("inf")
    nan = cbor.loads(h("f97e00"))
    assert nan != nan
    assert cbor.loads(h("fa47c35000")) == 100000.0
    assert cbor.loads(h("fb3ff199999999999a")) == 1.1


def test_round_trip_nested_record():
    rec = {"t": 1764489600, "seq": 258, "hr": 72, "spo2": None, "temp": 36.75,
           "pump": {"state": "running", "rate": 25.0, "alarms": ["OCCL", "AIR"]},
           "big": (1 << 64) - 1, "neg": -(1 << 63), "raw": b"\x00\xff" * 20,
           "tag": Tag(16, [1, 2])}
    assert cbor.loads(cbor.dumps(rec)) == rec


def test_temperature_float_precision():
    # 36.75 is exact in single precision; 36.8 needs a double.
    assert cbor.dumps(36.75) == h("fa42130000")
    assert cbor.loads(cbor.dumps(36.8)) == 36.8
    assert len(cbor.dumps(36.8)) == 9


def test_accepts_bytearray_and_memoryview():
    enc = cbor.dumps([1, "x", b"y"])
    assert cbor.loads(bytearray(enc)) == [1, "x", b"y"]
    assert cbor.loads(memoryview(enc)) == [1, "x", b"y"]


def test_encode_rejects_unsupported():
    devtest.raises(cbor.CBOREncodeError, cbor.dumps, {1: object()})
    devtest.raises(cbor.CBOREncodeError, cbor.dumps, 1 << 64)
    devtest.raises(cbor.CBOREncodeError, cbor.dumps, -(1 << 64) - 1)


MALFORMED = [
    ("", "empty"),
    ("18", "uint8 missing byte"),
    ("19 01", "uint16 truncated"),
    ("1b 00 00 00 00 00 00 00", "uint64 truncated"),
    ("1c", "reserved ai 28"),
    ("1d", "reserved ai 29"),
    ("1e", "reserved ai 30"),
    ("1f", "indefinite uint"),
    ("44 01 02", "bstr truncated"),
    ("5b ff ff ff ff ff ff ff ff", "bstr absurd length"),
    ("5a 7f ff ff ff 00", "bstr 2 GiB claim"),
    ("5f 41 00 ff", "indefinite bstr"),
    ("62 c3", "text truncated"),
    ("62 ff fe", "invalid utf-8"),
    ("61 80", "lone continuation byte"),
    ("83 01 02", "array truncated"),
    ("9b 00 00 00 00 ff ff ff ff", "array huge count"),
    ("9f 01 ff", "indefinite array"),
    ("a1 01", "map missing value"),
    ("bb 00 00 00 01 00 00 00 00", "map huge count"),
    ("a2 01 02 01 03", "duplicate key"),
    ("a1 80 01", "array as key"),
    ("a1 f5 01", "bool as key"),
    ("c1", "tag without content"),
    ("f8 20", "simple value 32"),
    ("e0", "simple value 0"),
    ("f7", "undefined"),
    ("f9 3c", "half truncated"),
    ("fa 00 00", "single truncated"),
    ("fb 00 00 00 00", "double truncated"),
    ("ff", "lone break"),
    ("01 02", "trailing byte"),
    ("a0 a0", "trailing map"),
]


def test_malformed_table():
    for enc, why in MALFORMED:
        e = devtest.raises(CBORDecodeError, cbor.loads, h(enc))
        assert isinstance(e, ValueError), why


def test_limits_depth_items_length():
    deep = b"\x81" * 40 + b"\x00"
    devtest.raises(CBORDecodeError, cbor.loads, deep)
    assert cbor.loads(b"\x81" * 10 + b"\x00", max_depth=16) is not None
    many = b"\x98\x64" + b"\x00" * 100  # array of 100 zeros
    assert len(cbor.loads(many)) == 100
    devtest.raises(CBORDecodeError, cbor.loads, many, 16, 50)
    devtest.raises(CBORDecodeError, cbor.loads, b"\x58\x40" + bytes(64), 16, 10, 32)
    # Tag nesting counts towards depth.
    devtest.raises(CBORDecodeError, cbor.loads, b"\xc1" * 40 + b"\x00")


def test_not_bytes_rejected():
    devtest.raises(CBORDecodeError, cbor.loads, "a0")
    devtest.raises(CBORDecodeError, cbor.loads, None)


def test_every_truncation_of_a_record_fails_cleanly():
    enc = cbor.dumps({"t": 1, "pump": {"state": "idle", "alarms": ["A"]}, "temp": 36.8, "b": b"xyz"})
    for i in range(len(enc)):
        devtest.raises(CBORDecodeError, cbor.loads, enc[:i])
