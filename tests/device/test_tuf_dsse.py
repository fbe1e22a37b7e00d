# Device tests (both runtimes) of the DSSE envelope support in
# updater/tuf/dsse.py, envelope.py and trusted_set.py: PAE, strict base64, envelope
# parsing and verification, against golden files made by python-tuf and
# securesystemslib (tests/device/data/tuf/dsse/make_dsse_fixtures.py).
import binascii
import json

import devtest
from updater.tuf import errors
from updater.tuf import dsse, envelope, metadata as md
from updater.tuf.errors import FormatError, UnsignedMetadataError
from updater.tuf.trusted_set import TrustedSet


def _read(name):
    with open(devtest.data_path("tuf/dsse/" + name), "rb") as f:
        return f.read()


_VEC = []


def _vec():
    if not _VEC:
        _VEC.append(json.loads(_read("vectors.json")))
    return _VEC[0]


def _set(now=None):
    return TrustedSet(_read("root1.json"), now or _vec()["ref_time"], envelope.ENVELOPE_SIMPLE)


def test_pae_matches_securesystemslib():
    for case in _vec()["pae"]:
        payload = binascii.a2b_base64(case["payload"])
        got = dsse.pae(case["type"], payload)
        assert binascii.hexlify(got).decode() == case["pae"], case["type"]
        # the streamed form feeds exactly the same bytes
        parts = []
        dsse.DssePayload(case["type"], payload).write_to(parts.append)
        assert b"".join(parts) == got


def test_base64_as_strict_as_securesystemslib():
    for case in _vec()["b64"]:
        if case["hex"] is None:
            devtest.raises(FormatError, dsse.b64decode_strict, case["s"], "x")
        else:
            got = dsse.b64decode_strict(case["s"], "x")
            assert binascii.hexlify(got).decode() == case["hex"], case["s"]
    devtest.raises(FormatError, dsse.b64decode_strict, 12, "x")
    devtest.raises(FormatError, dsse.b64decode_strict, None, "x")


def test_load_dsse_envelope():
    ts, part, sigs = envelope.load(_read("timestamp2.json"), md.TIMESTAMP, envelope.ENVELOPE_SIMPLE)
    assert ts.version == 2 and ts.snapshot_meta.version == 2
    assert isinstance(part, dsse.DssePayload)
    assert part.pae().startswith(b"DSSEv1 24 application/vnd.tuf+json ")
    assert len(sigs) == 1
    for keyid in sigs:
        binascii.unhexlify(sigs[keyid])  # converted to hex like the traditional envelope


def test_load_from_stream():
    with open(devtest.data_path("tuf/dsse/targets2.json"), "rb") as f:
        t, _p, _s = envelope.load(f, md.TARGETS, envelope.ENVELOPE_SIMPLE)
    assert t.get_target("fw/app.bin").length == 90


def test_envelope_kinds_are_not_mixed():
    devtest.raises(FormatError, envelope.load, _read("root1_metadata.json"), md.ROOT, envelope.ENVELOPE_SIMPLE)
    devtest.raises(FormatError, envelope.load, _read("root1.json"), md.ROOT, envelope.ENVELOPE_METADATA)
    devtest.raises(FormatError, envelope.load, _read("root1.json"), md.ROOT)  # default: traditional
    devtest.raises(ValueError, envelope.load, _read("root1.json"), md.ROOT, "dsse")
    devtest.raises(ValueError, TrustedSet, _read("root1.json"), 0, "dsse")


def test_malformed_envelopes():
    good = json.loads(_read("timestamp2.json"))
    cases = []
    for field in ("payload", "payloadType", "signatures"):
        d = dict(good)
        del d[field]
        cases.append(d)
    for field, value in (
        ("payload", 5),
        ("payload", "not base64!"),
        ("payloadType", None),
        ("payloadType", "application/vnd.tuf+json "),
        ("signatures", {}),
        ("signatures", ["x"]),
        ("signatures", [{"keyid": "ab"}]),
        ("signatures", [{"keyid": 5, "sig": "AAAA"}]),
        ("signatures", [{"keyid": "ab", "sig": "AA AA"}]),
        ("signatures", [{"keyid": "ab", "sig": "AAAA"}, {"keyid": "ab", "sig": "AAAA"}]),
        ("payload", "W10="),  # payload "[]"
        ("payload", "e30="),  # payload "{}"
        ("payload", "bm90IGpzb24="),  # payload "not json"
    ):
        d = dict(good)
        d[field] = value
        cases.append(d)
    cases.append([good])
    for d in cases:
        devtest.raises(FormatError, envelope.load, json.dumps(d).encode(), md.TIMESTAMP, envelope.ENVELOPE_SIMPLE)


def test_trusted_chain():
    ts = _set()
    ts.update_root(_read("root2.json"))
    ts.update_timestamp(_read("timestamp2.json"))
    ts.update_snapshot(_read("snapshot2.json"))
    t = ts.update_targets(_read("targets2.json"))
    assert ts.root.version == 2 and t.version == 2
    assert t.get_target("fw/app.bin") is not None


def test_golden_negatives():
    for name, role, exc in _vec()["negative"]:
        cls = getattr(errors, exc)
        if role == "root" and name.startswith("root1"):
            devtest.raises(cls, TrustedSet, _read(name), _vec()["ref_time"], envelope.ENVELOPE_SIMPLE)
        elif role == "root":
            devtest.raises(cls, _set().update_root, _read(name))
        else:
            devtest.raises(cls, _set().update_timestamp, _read(name))


def test_tampered_payload_fails_signature_not_parse():
    # The payload is well formed but was changed after signing.
    e = devtest.raises(UnsignedMetadataError, _set().update_timestamp, _read("timestamp2_tampered.json"))
    assert "timestamp" in str(e)


def test_in_place_base64_matches_securesystemslib():
    # The decoder used for the payload (in place, in chunks) accepts exactly
    # what securesystemslib's b64dec accepts, with the same result.
    cases = list(_vec()["b64"])
    cases.append({"s": "aGVs\u00e9bG8=", "hex": None})
    long_ok = "QUJD" * 700 + "QQ=="  # several chunks, padded tail
    cases.append({"s": long_ok, "hex": binascii.hexlify(b"ABC" * 700 + b"A").decode()})
    cases.append({"s": "QUJD" * 300 + "Q*JD" + "QUJD" * 300, "hex": None})
    cases.append({"s": "QUJD" * 300 + "QQ==" + "QUJD" * 300, "hex": None})
    for case in cases:
        raw = case["s"].encode()
        buf = bytearray(b"[" + raw + b"]")
        if case["hex"] is None:
            devtest.raises(FormatError, dsse._b64_in_place, buf, 1, 1 + len(raw))
        else:
            n = dsse._b64_in_place(buf, 1, 1 + len(raw))
            assert binascii.hexlify(buf[1:1 + n]).decode() == case["hex"], case["s"][:20]


def _variant(mutate):
    d = json.loads(_read("timestamp2.json"))
    text = mutate(d)
    return text.encode() if isinstance(text, str) else text


def _same_timestamp(data):
    ts, part, sigs = envelope.load(data, md.TIMESTAMP, envelope.ENVELOPE_SIMPLE)
    ref, rpart, rsigs = envelope.load(_read("timestamp2.json"), md.TIMESTAMP, envelope.ENVELOPE_SIMPLE)
    assert ts.version == ref.version and sigs == rsigs
    assert part.pae() == rpart.pae()
    return ts


def test_envelope_layouts_json_allows():
    good = json.loads(_read("timestamp2.json"))
    p = good["payload"]
    t = good["payloadType"]
    sigs = json.dumps(good["signatures"])
    # other key order and whitespace
    _same_timestamp(('\n { "signatures" :%s ,\t"payload"\r\n: "%s", "payloadType": "%s" }\n' % (sigs, p, t)).encode())
    # key written with an escape
    _same_timestamp(('{"pay\\u006coad": "%s", "payloadType": "%s", "signatures": %s}' % (p, t, sigs)).encode())
    # payload with a JSON escape ("\/" is "/"): the json.loads path
    if "/" in p:
        _same_timestamp(('{"payload": "%s", "payloadType": "%s", "signatures": %s}' % (p.replace("/", "\\/"), t, sigs)).encode())
    # duplicate key: the last one counts (as json)
    _same_timestamp(('{"payload": "e30=", "payloadType": "%s", "signatures": %s, "payload": "%s"}' % (t, sigs, p)).encode())
    # a "payload" field nested elsewhere is not the payload
    s2 = json.loads(sigs)
    s2[0]["payload"] = "e30="
    _same_timestamp(('{"x": {"payload": "e30="}, "payload": "%s", "payloadType": "%s", "signatures": %s}' % (p, t, json.dumps(s2))).encode())
    # URL-safe alphabet
    _same_timestamp(('{"payload": "%s", "payloadType": "%s", "signatures": %s}' % (p.replace("+", "-").replace("/", "_"), t, sigs)).encode())


def test_envelope_layouts_refused():
    good = json.loads(_read("timestamp2.json"))
    p = good["payload"]
    t = good["payloadType"]
    sigs = json.dumps(good["signatures"])
    bad = (
        '{"payload": "%s", "payloadType": "%s", "signatures": %s' % (p, t, sigs),  # truncated
        '{"payload": "%s, "payloadType": "%s", "signatures": %s}' % (p, t, sigs),  # broken string
        '{"payload": "%s", "payloadType": "%s", "signatures": %s, "payload": 5}' % (p, t, sigs),
        '{"payload": "%s ", "payloadType": "%s", "signatures": %s}' % (p, t, sigs),
        '{"payload": "%s", "payloadType": "%s", "signatures": %s}' % (p[:-4], t, sigs),
        '{"payload": "%s", "payloadType": "%s", "signatures": %s}' % ("A" + p[1:], t, sigs),  # signature fails later, but parses
        '["payload", "%s"]' % p,
        '{"payload": "%s", "payloadType": "%s", "signatures": %s} x' % (p, t, sigs),
    )
    for i in range(len(bad)):
        data = bad[i].encode()
        if i == 5:
            ts = TrustedSet(_read("root1.json"), _vec()["ref_time"], envelope.ENVELOPE_SIMPLE)
            devtest.raises(errors.RepositoryError, ts.update_timestamp, data)
        else:
            devtest.raises(FormatError, envelope.load, data, md.TIMESTAMP, envelope.ENVELOPE_SIMPLE)
