# Device tests (both runtimes) of updater/tuf/trusted_set.py: the spec 5.x
# checks, fed golden metadata made by python-tuf
# (tests/device/data/tuf/make_fixtures.py), including golden negative files.
import json

import devtest
from updater.tuf import errors
from updater.tuf.errors import (
    BadVersionNumberError,
    EqualVersionNumberError,
    ExpiredMetadataError,
    LengthOrHashMismatchError,
    RepositoryError,
    RoleNotFoundError,
    UnsignedMetadataError,
)
from updater.tuf.trusted_set import TrustedSet


def _read(name):
    with open(devtest.data_path("tuf/" + name), "rb") as f:
        return f.read()


_VEC = []


def _vec():
    if not _VEC:
        _VEC.append(json.loads(_read("vectors.json")))
    return _VEC[0]


def _now():
    return _vec()["ref_time"]


def _set_at_timestamp(now=None):
    ts = TrustedSet(_read("root1.json"), now or _now())
    ts.update_root(_read("root2.json"))
    ts.update_timestamp(_read("timestamp2.json"))
    return ts


def test_happy_path_all_schemes():
    # root/timestamp ed25519, snapshot ecdsa-sha2-nistp256, targets rsassa-pss-sha256
    ts = _set_at_timestamp()
    ts.update_snapshot(_read("snapshot2.json"))
    t = ts.update_targets(_read("targets2.json"))
    assert t.version == 2 and ts.root.version == 2 and ts.timestamp.version == 2
    assert ts.contains("targets", "root")
    assert ts.get("targets").get_target("fw/app.bin").length == 1200


def test_delegated_role_verified_against_its_delegator():
    ts = TrustedSet(_read("root1.json"), _now())
    ts.update_timestamp(_read("timestamp3_nohash.json"))
    ts.update_snapshot(_read("snapshot3_nohash.json"))
    ts.update_targets(_read("targets3.json"))
    devtest.raises(UnsignedMetadataError, ts.update_delegated_targets, _read("pump1_wrongkey.json"), "pump", "targets")
    devtest.raises(ExpiredMetadataError, ts.update_delegated_targets, _read("pump1_expired.json"), "pump", "targets")
    p = ts.update_delegated_targets(_read("pump1.json"), "pump", "targets")
    assert p.get_target("pump/fw.bin") is not None
    assert ts.contains("pump", "targets") and not ts.contains("pump", "bins")
    # a role the snapshot does not list
    devtest.raises(RoleNotFoundError, ts.update_delegated_targets, _read("pump1.json"), "bins", "targets")


def test_delegated_role_hash_and_expiry_checked():
    ts = TrustedSet(_read("root1.json"), _now())
    ts.update_timestamp(_read("timestamp3.json"))
    ts.update_snapshot(_read("snapshot3.json"))
    ts.update_targets(_read("targets3.json"))
    # snapshot3 lists pump.json with a sha512 hash: the expired variant has
    # other bytes, so it fails on the hash before anything else
    devtest.raises(LengthOrHashMismatchError, ts.update_delegated_targets, _read("pump1_expired.json"), "pump", "targets")


def test_golden_negative_fixtures():
    for name, cls_name in _vec()["negative"].items():
        cls = getattr(errors, cls_name)
        ts = TrustedSet(_read("root1.json"), _now())
        data = _read(name)
        if name.startswith("root"):
            e = devtest.raises(RepositoryError, ts.update_root, data)
        else:
            e = devtest.raises(RepositoryError, ts.update_timestamp, data)
        assert isinstance(e, cls), (name, e)


def test_root_rules():
    devtest.raises(UnsignedMetadataError, TrustedSet, _read("root1_unsigned.json"), _now())
    # an expired initial or intermediate root is fine ...
    ts = TrustedSet(_read("root1_expired.json"), _now())
    ts = TrustedSet(_read("root1.json"), _now())
    ts.update_root(_read("root2.json"))
    ts.update_root(_read("root3.json"))
    assert ts.root.version == 3
    devtest.raises(BadVersionNumberError, ts.update_root, _read("root3.json"))  # not N+1
    # ... but the final root must not be expired
    ts = TrustedSet(_read("root1_expired.json"), _now())
    devtest.raises(ExpiredMetadataError, ts.update_timestamp, _read("timestamp2.json"))
    # root cannot change once timestamp is loaded
    ts = _set_at_timestamp()
    devtest.raises(RuntimeError, ts.update_root, _read("root3.json"))


def test_timestamp_rollback_and_equal_version():
    ts = TrustedSet(_read("root1.json"), _now())
    ts.update_timestamp(_read("timestamp3.json"))
    devtest.raises(BadVersionNumberError, ts.update_timestamp, _read("timestamp2.json"))
    devtest.raises(EqualVersionNumberError, ts.update_timestamp, _read("timestamp3.json"))
    # version 4 listing an older snapshot version (2 < 3): snapshot rollback
    devtest.raises(BadVersionNumberError, ts.update_timestamp, _read("timestamp4_snap_rollback.json"))
    assert ts.timestamp.version == 3


def test_expired_timestamp_is_kept_for_rollback_but_blocks_snapshot():
    ts = TrustedSet(_read("root1.json"), _now())
    devtest.raises(ExpiredMetadataError, ts.update_timestamp, _read("timestamp2_expired.json"))
    assert ts.timestamp.version == 2
    devtest.raises(ExpiredMetadataError, ts.update_snapshot, _read("snapshot2.json"))
    # the same files are fine at an earlier time
    ts = TrustedSet(_read("root1.json"), _now() - 24 * 3600 * 365 * 10)
    ts.update_timestamp(_read("timestamp2_expired.json"))


def test_snapshot_checks():
    ts = _set_at_timestamp()
    # bytes differing from what timestamp lists (mix-and-match)
    devtest.raises(LengthOrHashMismatchError, ts.update_snapshot, _read("snapshot3.json"))
    # hashes match but the signature is by the wrong key
    ts = TrustedSet(_read("root1.json"), _now())
    ts.update_timestamp(_read("timestamp2_badsnap.json"))
    devtest.raises(UnsignedMetadataError, ts.update_snapshot, _read("snapshot2_badsig.json"))
    # expired snapshot
    ts = TrustedSet(_read("root1.json"), _now())
    ts.update_timestamp(_read("timestamp2_snapexpired.json"))
    devtest.raises(ExpiredMetadataError, ts.update_snapshot, _read("snapshot2_expired.json"))
    devtest.raises(ExpiredMetadataError, ts.update_targets, _read("targets2.json"))
    # snapshot version differs from what timestamp lists
    ts = TrustedSet(_read("root1.json"), _now())
    ts.update_timestamp(_read("timestamp2_snapv9.json"))
    devtest.raises(BadVersionNumberError, ts.update_snapshot, _read("snapshot2.json"))


def test_snapshot_rollback_of_roles():
    # The orchestrator's order: stored timestamp v3, new timestamp v4, stored
    # snapshot v3 (kept as intermediate: its version no longer matches), then
    # the new snapshot v4, which may neither roll back nor drop a role.
    for ts_name, snap_name, exc in (
        ("timestamp4_targets_rollback.json", "snapshot4_targets_rollback.json", BadVersionNumberError),
        ("timestamp4_drops_pump.json", "snapshot4_drops_pump.json", RepositoryError),
    ):
        ts = TrustedSet(_read("root1.json"), _now())
        ts.update_timestamp(_read("timestamp3.json"))
        ts.update_timestamp(_read(ts_name))
        devtest.raises(BadVersionNumberError, ts.update_snapshot, _read("snapshot3.json"), True)
        assert ts.snapshot.version == 3
        devtest.raises(exc, ts.update_snapshot, _read(snap_name))
        # once the snapshot is in, the timestamp cannot change any more
        devtest.raises(RuntimeError, ts.update_timestamp, _read("timestamp3.json"))


def test_targets_checks():
    ts = _set_at_timestamp()
    ts.update_snapshot(_read("snapshot2.json"))
    devtest.raises(LengthOrHashMismatchError, ts.update_targets, _read("targets2_wrongkey.json"))
    devtest.raises(LengthOrHashMismatchError, ts.update_targets, _read("targets3.json"))
    ts = TrustedSet(_read("root1.json"), _now())
    ts.update_timestamp(_read("timestamp2_nohash.json"))
    ts.update_snapshot(_read("snapshot2_nohash.json"))
    devtest.raises(UnsignedMetadataError, ts.update_targets, _read("targets2_wrongkey.json"))
    devtest.raises(BadVersionNumberError, ts.update_targets, _read("targets3.json"))
    devtest.raises(RuntimeError, ts.update_delegated_targets, _read("pump1.json"), "pump", "nobody")
    ts = TrustedSet(_read("root1.json"), _now())
    devtest.raises(RuntimeError, ts.update_snapshot, _read("snapshot2.json"))
    devtest.raises(RuntimeError, ts.update_targets, _read("targets2.json"))
