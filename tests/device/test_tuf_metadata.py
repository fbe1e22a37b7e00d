# Device tests (both runtimes) of updater/tuf/ (metadata, envelope, signatures, hashes, patterns): strict parsing,
# canonical signed bytes, signature thresholds, glob/hash-bin matching and
# expiry parsing, against golden vectors computed by python-tuf
# (tests/device/data/tuf/make_fixtures.py).
import json

import devtest
from updater.tuf import envelope, hashes, metadata as md, patterns, signatures
from updater.tuf.errors import FormatError, LengthOrHashMismatchError, RepositoryError, UnsignedMetadataError
from updater.tuf.fetcher import parse_url, resolve_location
from updater.tuf.patterns import quote


def _read(name):
    with open(devtest.data_path("tuf/" + name), "rb") as f:
        return f.read()


def _vectors():
    return json.loads(_read("vectors.json"))


def test_expires_parsing_matches_python():
    for s, want in _vectors()["expires_vectors"]:
        assert md.parse_expires(s) == want, s
    for bad in ("2030-01-01T00:00:00", "2030-13-01T00:00:00Z", "2030-02-30T00:00:00Z", "2030-01-01 00:00:00Z",
                "2030-01-01T24:00:00Z", "2O30-01-01T00:00:00Z", 20300101, "2029-02-29T00:00:00Z"):
        devtest.raises(FormatError, md.parse_expires, bad)


def test_path_patterns_match_python_tuf():
    for path, pattern, want in _vectors()["path_vectors"]:
        assert patterns.path_matches(path, pattern) == want, (path, pattern, want)


def test_hash_bins_match_python_tuf():
    v = _vectors()
    role = md.DelegatedRole({"name": "bins", "keyids": [], "threshold": 1, "terminating": False,
                             "path_hash_prefixes": ["0", "1", "2", "3"]}, "t")
    for path, want in v["hash_vectors"]:
        assert role.is_delegated_path(path) == want, path
    succ = md.SuccinctRoles({"keyids": [], "threshold": 1, "bit_length": 5, "name_prefix": "bin"}, "t")
    for path, want in v["succinct_vectors"]:
        assert succ.role_for_target(path) == want, path
        assert succ.is_role(want)
    assert not succ.is_role("bin-20") and not succ.is_role("bin-1") and not succ.is_role("bin-0A")


def test_load_golden_metadata():
    root, sb, sigs = envelope.load(_read("root1.json"), md.ROOT)
    assert root.version == 1 and root.consistent_snapshot is True
    assert sorted(root.roles) == ["root", "snapshot", "targets", "timestamp"]
    assert len(sigs) == 1
    # canonical bytes: what python-tuf signed, so the root verifies itself
    assert signatures.verify_delegate(root, md.ROOT, sb, sigs) == 1
    t, sb, sigs = envelope.load(_read("targets3.json"), md.TARGETS)
    info = t.get_target("fw/app.bin")
    assert info.length == 1200 and info.custom == {"model": "pump-x", "version": "2.0.0"}
    assert info.hashes["sha256"] == _vectors()["target_fw_sha256"]
    assert t.get_target("nope") is None
    assert [r.name for r in t.delegations.roles] == ["pump", "bins"]
    assert t.delegations.roles_for_target("pump/fw.bin")[0] == ("pump", True)
    ts, sb, sigs = envelope.load(_read("timestamp2.json"), md.TIMESTAMP)
    assert ts.snapshot_meta.version == 2 and ts.snapshot_meta.hashes
    ts.snapshot_meta.verify_length_and_hashes(_read("snapshot2.json"))
    devtest.raises(LengthOrHashMismatchError, ts.snapshot_meta.verify_length_and_hashes, _read("snapshot3.json"))


def test_threshold_counts_distinct_valid_keys():
    root, sb, sigs = envelope.load(_read("root2.json"), md.ROOT)
    old, _sb, _s = envelope.load(_read("root1.json"), md.ROOT)
    signatures.verify_delegate(old, md.ROOT, sb, sigs)  # old key signed v2
    signatures.verify_delegate(root, md.ROOT, sb, sigs)  # new key signed v2
    # threshold 2 with one valid signature fails; a signature by a key the
    # role does not list does not count
    role = md.Role({"keyids": root.roles["root"].keyids + old.roles["root"].keyids, "threshold": 2}, "r")
    keys = {}
    for k in root.keys:
        keys[k] = root.keys[k]
    for k in old.keys:
        keys[k] = old.keys[k]
    assert signatures.verify_role(role, keys, sb, sigs, "root") == 2
    only = {}
    for k in sigs:
        if k in old.roles["root"].keyids:
            only[k] = sigs[k]
    devtest.raises(UnsignedMetadataError, signatures.verify_role, role, keys, sb, only, "root")
    # duplicate signatures by one key are refused at parse time
    devtest.raises(FormatError, envelope.load, _read("timestamp2_dupsig.json"), md.TIMESTAMP)
    # a signed field changed after signing
    ts, sb, sigs = envelope.load(_read("timestamp2_tampered.json"), md.TIMESTAMP)
    devtest.raises(UnsignedMetadataError, signatures.verify_delegate, old, md.TIMESTAMP, sb, sigs)


def _root_doc():
    return json.loads(_read("root1.json"))


def _expect_format_error(doc, typ):
    data = json.dumps(doc).encode()
    e = devtest.raises(RepositoryError, envelope.load, data, typ)
    assert isinstance(e, FormatError), repr(e)


def test_malformed_metadata_is_refused():
    for data in (b"", b"{", b"[]", b"null", b'{"signed": {}, "signatures": {}}', b"\xff\xfe", b'{"signed": 1, "signatures": []}'):
        devtest.raises(FormatError, envelope.load, data, md.ROOT)
    cases = []
    d = _root_doc(); d["signed"]["_type"] = "targets"; cases.append(d)
    d = _root_doc(); d["signed"]["version"] = 0; cases.append(d)
    d = _root_doc(); d["signed"]["version"] = True; cases.append(d)
    d = _root_doc(); d["signed"]["version"] = "1"; cases.append(d)
    d = _root_doc(); d["signed"]["spec_version"] = "2.0.0"; cases.append(d)
    d = _root_doc(); d["signed"]["spec_version"] = "1.x"; cases.append(d)
    d = _root_doc(); d["signed"]["expires"] = "tomorrow"; cases.append(d)
    d = _root_doc(); del d["signed"]["roles"]["snapshot"]; cases.append(d)
    d = _root_doc(); d["signed"]["roles"]["mirror"] = {"keyids": [], "threshold": 1}; cases.append(d)
    d = _root_doc(); d["signed"]["roles"]["root"]["threshold"] = 0; cases.append(d)
    d = _root_doc(); k = d["signed"]["roles"]["root"]["keyids"]; k.append(k[0]); cases.append(d)
    d = _root_doc(); d["signed"]["consistent_snapshot"] = "yes"; cases.append(d)
    d = _root_doc(); kid = list(d["signed"]["keys"])[0]; del d["signed"]["keys"][kid]["keyval"]; cases.append(d)
    d = _root_doc(); d["signatures"] = [{"keyid": 1, "sig": "00"}]; cases.append(d)
    for d in cases:
        _expect_format_error(d, md.ROOT)
    # a float parses but has no canonical form: refused when verifying
    d = _root_doc(); d["signed"]["extra"] = 1.5
    root, sd, sigs = envelope.load(json.dumps(d).encode(), md.ROOT)
    devtest.raises(FormatError, signatures.verify_delegate, root, md.ROOT, sd, sigs)
    t = json.loads(_read("targets3.json"))
    bad = []
    x = json.loads(json.dumps(t)); x["signed"]["targets"]["fw/app.bin"]["length"] = -1; bad.append(x)
    x = json.loads(json.dumps(t)); x["signed"]["targets"]["fw/app.bin"]["hashes"] = {}; bad.append(x)
    x = json.loads(json.dumps(t)); del x["signed"]["targets"]["fw/app.bin"]["hashes"]; bad.append(x)
    x = json.loads(json.dumps(t)); x["signed"]["delegations"]["roles"][0]["paths"] = "pump/*"; bad.append(x)
    x = json.loads(json.dumps(t)); x["signed"]["delegations"]["roles"][0]["path_hash_prefixes"] = ["0"]; bad.append(x)
    x = json.loads(json.dumps(t)); x["signed"]["delegations"]["roles"][1]["name"] = "pump"; bad.append(x)
    x = json.loads(json.dumps(t)); x["signed"]["delegations"]["roles"][0]["name"] = "root"; bad.append(x)
    x = json.loads(json.dumps(t)); x["signed"]["delegations"]["roles"][0]["terminating"] = 1; bad.append(x)
    x = json.loads(json.dumps(t)); x["signed"]["delegations"]["succinct_roles"] = {}; bad.append(x)
    for x in bad:
        _expect_format_error(x, md.TARGETS)
    ts = json.loads(_read("timestamp2.json"))
    x = json.loads(json.dumps(ts)); x["signed"]["meta"] = {}; _expect_format_error(x, md.TIMESTAMP)
    x = json.loads(json.dumps(ts)); x["signed"]["meta"]["snapshot.json"]["version"] = -3; _expect_format_error(x, md.TIMESTAMP)
    x = json.loads(json.dumps(ts)); x["signed"]["meta"]["snapshot.json"]["hashes"] = {"sha256": 5}; _expect_format_error(x, md.TIMESTAMP)


def test_unknown_fields_are_kept_in_signed_bytes():
    # python-tuf keeps unrecognized fields; they are part of what was signed,
    # so adding one after signing breaks the signature.
    d = _root_doc()
    d["signed"]["x-vendor"] = {"a": [1, 2]}
    root, sb, sigs = envelope.load(json.dumps(d).encode(), md.ROOT)
    assert b'"x-vendor":{"a":[1,2]}' in signatures.signed_bytes(sb)
    devtest.raises(UnsignedMetadataError, signatures.verify_delegate, root, md.ROOT, sb, sigs)


def test_load_from_stream():
    # the orchestrator hands open files: hashed in pieces, rewound, parsed
    ts, sd, sigs = envelope.load(_read("timestamp2.json"), md.TIMESTAMP)
    with open(devtest.data_path("tuf/snapshot2.json"), "rb") as f:
        ts.snapshot_meta.verify_length_and_hashes(f)
        snap, sd, sigs = envelope.load(f, md.SNAPSHOT)
    assert snap.version == 2 and "targets.json" in snap.meta
    with open(devtest.data_path("tuf/snapshot3.json"), "rb") as f:
        devtest.raises(LengthOrHashMismatchError, ts.snapshot_meta.verify_length_and_hashes, f)


def test_hash_check_streaming():
    data = _read("target_fw_app.bin")
    t, _sb, _s = envelope.load(_read("targets2.json"), md.TARGETS)
    info = t.get_target("fw/app.bin")
    hc = info.hash_check()
    for i in range(0, len(data), 100):
        hc.update(data[i:i + 100])
    hc.finish()
    hc = info.hash_check()
    hc.update(data[:-1] + b"X")
    devtest.raises(LengthOrHashMismatchError, hc.finish)
    hc = info.hash_check()
    devtest.raises(LengthOrHashMismatchError, hc.update, data + b"!")
    hc = info.hash_check()
    hc.update(data[:10])
    devtest.raises(LengthOrHashMismatchError, hc.finish)
    # only unsupported algorithms listed: refused, never "verified by nothing"
    devtest.raises(LengthOrHashMismatchError, hashes.HashCheck, 3, {"md5": "00"}, True)


def test_url_helpers():
    assert parse_url("http://127.0.0.1:8080/a/b.json") == ("http", "127.0.0.1", 8080, "/a/b.json")
    assert parse_url("https://repo.example") == ("https", "repo.example", 443, "/")
    assert parse_url("http://[::1]:81/x") == ("http", "::1", 81, "/x")
    assert resolve_location("http://h:1/a/b", "/c") == "http://h:1/c"
    assert resolve_location("http://h:1/a/b", "c") == "http://h:1/a/c"
    assert resolve_location("http://h:1/a/b", "https://o/x") == "https://o/x"
    assert quote("a/b c%.json") == "a%2Fb%20c%25.json"
    assert quote("bins-0f") == "bins-0f"


def test_one_key_under_two_keyids_counts_once():
    # A role listing the same public key under two key ids, threshold 2:
    # two "signatures" by that one key must not reach the threshold.
    root, sd, sigs = envelope.load(_read("root1.json"), md.ROOT)
    kid = root.roles["root"].keyids[0]
    keys = {kid: root.keys[kid], "alias": root.keys[kid]}
    sigs2 = {kid: sigs[kid], "alias": sigs[kid]}
    role = md.Role({"keyids": [kid, "alias"], "threshold": 2}, "r")
    devtest.raises(UnsignedMetadataError, signatures.verify_role, role, keys, sd, sigs2, "root")
    role1 = md.Role({"keyids": [kid, "alias"], "threshold": 1}, "r")
    assert signatures.verify_role(role1, keys, sd, sigs2, "root") == 1
