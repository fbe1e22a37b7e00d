# Canonical JSON (updater.crypto.canonjson) against golden output of
# securesystemslib.formats.encode_canonical, made by
# tests/device/data/crypto/make_vectors.py. Both runtimes.
import binascii
import json

import devtest
from updater.crypto.canonjson import CanonicalJSONError, encode_canonical


def _golden():
    with open(devtest.data_path("crypto/canonjson.json")) as f:
        return json.load(f)


def test_matches_securesystemslib_golden():
    g = _golden()
    assert len(g["cases"]) >= 15
    for c in g["cases"]:
        want = binascii.unhexlify(c["canonical"])
        got = encode_canonical(c["obj"])
        assert got == want, (c["obj"], got, want)


def test_streaming_output_equals_joined():
    g = _golden()
    for c in g["cases"]:
        parts = []
        assert encode_canonical(c["obj"], parts.append) is None
        assert b"".join(parts) == binascii.unhexlify(c["canonical"])


def test_floats_rejected():
    for r in _golden()["rejects"]:
        obj = json.loads(r["json"])
        e = devtest.raises(CanonicalJSONError, encode_canonical, obj)
        assert "float" in str(e), r["name"]
    devtest.raises(CanonicalJSONError, encode_canonical, 1.0)
    devtest.raises(CanonicalJSONError, encode_canonical, {"a": [0.5]})
    assert issubclass(CanonicalJSONError, ValueError)


def test_exact_forms():
    cases = [
        ({}, b"{}"),
        ([], b"[]"),
        ("", b'""'),
        ([1, 2, 3], b"[1,2,3]"),
        ({"y": 2, "x": 3}, b'{"x":3,"y":2}'),
        ({"A": [99]}, b'{"A":[99]}'),
        ([True, False, None], b"[true,false,null]"),
        ({"a": True, "b": 1}, b'{"a":true,"b":1}'),
        ('a"b\\c', b'"a\\"b\\\\c"'),
        ("\n\t\x00", b'"\n\t\x00"'),
        ("\u00e9\u4e2d", b'"\xc3\xa9\xe4\xb8\xad"'),
        ((1, "x"), b'[1,"x"]'),
        (2**100, b"1267650600228229401496703205376"),
        (-(2**65), b"-36893488147419103232"),
        ({"b": {"d": 1, "c": 2}, "a": []}, b'{"a":[],"b":{"c":2,"d":1}}'),
    ]
    for obj, want in cases:
        assert encode_canonical(obj) == want, (obj, encode_canonical(obj), want)


def test_unencodable():
    devtest.raises(CanonicalJSONError, encode_canonical, {1: "x"})
    devtest.raises(CanonicalJSONError, encode_canonical, {"a": {None: 1}})
    devtest.raises(CanonicalJSONError, encode_canonical, b"bytes")
    devtest.raises(CanonicalJSONError, encode_canonical, {"s": set()} if devtest.RUNTIME == "cpython" else {"s": object()})
    deep = []
    for _ in range(40):
        deep = [deep]
    devtest.raises(CanonicalJSONError, encode_canonical, deep)
    ok = []
    for _ in range(20):
        ok = [ok]
    assert encode_canonical(ok) == b"[" * 21 + b"]" * 21


def test_sorting_is_by_code_point():
    # Upper case before lower case, shorter prefix first, non-ASCII last in
    # code-point order (UTF-8 byte order agrees with it).
    obj = {"b": 0, "B": 0, "a": 0, "ab": 0, "\u00e9": 0, "\u4e2d": 0, "\U0001f600": 0, "~": 0}
    assert encode_canonical(obj) == (
        '{"B":0,"a":0,"ab":0,"b":0,"~":0,"\u00e9":0,"\u4e2d":0,"\U0001f600":0}'.encode("utf-8")
    )


def test_metadata_text_as_python_tuf_writes_it():
    # The device gets JSON text with \u escapes (surrogate pairs for non-BMP
    # characters); after its own json.loads the canonical bytes must equal
    # securesystemslib's for the same document.
    texts = _golden()["texts"]
    assert len(texts) >= 4
    for t in texts:
        obj = json.loads(t["json"])
        assert encode_canonical(obj) == binascii.unhexlify(t["canonical"]), t["json"][:60]


def test_surrogates():
    # A pair held as two code units (MicroPython's json) becomes one 4-byte
    # UTF-8 character; an unpaired surrogate has no canonical form.
    pair = json.loads('"\\ud83d\\ude00"')
    assert encode_canonical(pair) == b'"\xf0\x9f\x98\x80"'
    assert encode_canonical({pair: pair}) == b'{"\xf0\x9f\x98\x80":"\xf0\x9f\x98\x80"}'
    assert encode_canonical("\ud7ff\ue000") == '"\ud7ff\ue000"'.encode("utf-8")
    for bad in ('"\\ud83d"', '"\\ude00"', '"\\ude00\\ud83d"', '"a\\ud83dz"'):
        s = json.loads(bad)
        devtest.raises(CanonicalJSONError, encode_canonical, s)
        devtest.raises(CanonicalJSONError, encode_canonical, {s: 1})
