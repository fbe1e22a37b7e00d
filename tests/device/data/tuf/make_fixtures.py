"""Generate the golden TUF fixtures for tests/device/test_tuf_*.py (host script).

Run from the repository root:  .venv/bin/python tests/device/data/tuf/make_fixtures.py

Uses python-tuf's Metadata API and securesystemslib CryptoSigner keys; the
output is committed. Keys are fresh on each run (the fixtures are consistent
among themselves, not reproducible byte for byte). Expiry dates are fixed:
valid ones expire 2030-01-01, expired ones 2020-01-01; the device tests use
a reference time of 2026-01-01 (REF_TIME in vectors.json).

Positive chain: root1 -> root2 (root key rotated) ; timestamp2/3, snapshot2/3,
targets2/3 (targets3 delegates "pump" with paths, "bins" via hash prefixes),
pump1.
Negative (golden) fixtures, each with the exception the client must raise,
are listed in vectors.json["negative"].
"""
from __future__ import annotations

import copy
import datetime as dt
import fnmatch  # noqa: F401  (documents what path vectors are checked against)
import json
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    MetaFile,
    Metadata,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

OUT = Path(__file__).resolve().parent
VALID = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
EXPIRED = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
REF_TIME = int(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp())
SER = JSONSerializer(compact=True)


def signed(md: Metadata, *signers) -> bytes:
    md.signatures.clear()
    for s in signers:
        md.sign(s, append=True)
    return md.to_bytes(SER)


def write(name: str, data: bytes) -> None:
    (OUT / name).write_bytes(data)


def main() -> None:
    for f in OUT.glob("*.json"):
        f.unlink()
    k_root = CryptoSigner.generate_ed25519()
    k_root2 = CryptoSigner.generate_ed25519()
    k_ts = CryptoSigner.generate_ed25519()
    k_snap = CryptoSigner.generate_ecdsa()
    k_tgt = CryptoSigner.generate_rsa(scheme="rsassa-pss-sha256", size=2048)
    k_pump = CryptoSigner.generate_ed25519()
    k_bins = CryptoSigner.generate_ed25519()
    k_evil = CryptoSigner.generate_ed25519()

    root = Root(expires=VALID, consistent_snapshot=True)
    root.add_key(k_root.public_key, "root")
    root.add_key(k_ts.public_key, "timestamp")
    root.add_key(k_snap.public_key, "snapshot")
    root.add_key(k_tgt.public_key, "targets")
    r1 = Metadata(root)
    write("root1.json", signed(r1, k_root))
    r1_bytes = (OUT / "root1.json").read_bytes()

    r2 = copy.deepcopy(r1)
    r2.signed.version = 2
    r2.signed.revoke_key(k_root.public_key.keyid, "root")
    r2.signed.add_key(k_root2.public_key, "root")
    write("root2.json", signed(r2, k_root, k_root2))
    write("root2_only_new.json", signed(r2, k_root2))
    write("root2_only_old.json", signed(r2, k_root))
    r3 = copy.deepcopy(r2)
    r3.signed.version = 3
    write("root3.json", signed(r3, k_root2))
    write("root3_as_next_of_1.json", signed(r3, k_root, k_root2))  # version skip
    rexp = copy.deepcopy(r1)
    rexp.signed.expires = EXPIRED
    write("root1_expired.json", signed(rexp, k_root))
    write("root1_unsigned.json", signed(r1))

    # targets v2: one target; targets v3: adds delegations
    t2 = Metadata(Targets(version=2, expires=VALID))
    fw = b"firmware v2\n" * 100
    tf = TargetFile.from_data("fw/app.bin", fw, ["sha256", "sha512"])
    tf.unrecognized_fields["custom"] = {"model": "pump-x", "version": "2.0.0"}
    t2.signed.targets["fw/app.bin"] = tf
    write("targets2.json", signed(t2, k_tgt))
    write("target_fw_app.bin", fw)
    t2_bytes = (OUT / "targets2.json").read_bytes()
    write("targets2_wrongkey.json", signed(t2, k_snap))

    t3 = copy.deepcopy(t2)
    t3.signed.version = 3
    t3.signed.delegations = Delegations(keys={}, roles={})
    t3.signed.add_key(k_pump.public_key, None) if False else None
    t3.signed.delegations.keys[k_pump.public_key.keyid] = k_pump.public_key
    t3.signed.delegations.keys[k_bins.public_key.keyid] = k_bins.public_key
    t3.signed.delegations.roles["pump"] = DelegatedRole("pump", [k_pump.public_key.keyid], 1, True, ["pump/*"])
    t3.signed.delegations.roles["bins"] = DelegatedRole("bins", [k_bins.public_key.keyid], 1, False, None, ["0", "1", "2", "3"])
    write("targets3.json", signed(t3, k_tgt))
    t3_bytes = (OUT / "targets3.json").read_bytes()

    pump = Metadata(Targets(version=1, expires=VALID))
    pump.signed.targets["pump/fw.bin"] = TargetFile.from_data("pump/fw.bin", b"pump fw", ["sha256"])
    write("pump1.json", signed(pump, k_pump))
    pump_bytes = (OUT / "pump1.json").read_bytes()
    write("pump1_wrongkey.json", signed(pump, k_bins))
    pexp = copy.deepcopy(pump)
    pexp.signed.expires = EXPIRED
    write("pump1_expired.json", signed(pexp, k_pump))

    def snap(version: int, targets_v: int, extra: dict | None = None, exp=VALID) -> Metadata:
        m = {"targets.json": MetaFile(targets_v, len({2: t2_bytes, 3: t3_bytes}[targets_v]), None)}
        m["targets.json"] = MetaFile.from_data(targets_v, {2: t2_bytes, 3: t3_bytes}[targets_v], ["sha256"])
        if extra:
            m.update(extra)
        return Metadata(Snapshot(version=version, expires=exp, meta=m))

    s2 = snap(2, 2)
    write("snapshot2.json", signed(s2, k_snap))
    s3 = snap(3, 3, {"pump.json": MetaFile.from_data(1, pump_bytes, ["sha512"])})
    write("snapshot3.json", signed(s3, k_snap))
    s3_rollback = snap(3, 2)  # lists targets v2 after v3 was trusted... and drops pump
    write("snapshot4_targets_rollback.json", signed(snap(4, 2, {"pump.json": MetaFile(1)}), k_snap))
    write("snapshot4_drops_pump.json", signed(snap(4, 3), k_snap))
    write("snapshot2_expired.json", signed(snap(2, 2, exp=EXPIRED), k_snap))
    write("snapshot2_badsig.json", signed(s2, k_ts))
    del s3_rollback

    # Same chains with version-only meta (no hashes), so that signature
    # checks are reached for files whose bytes differ from the good ones.
    write("snapshot2_nohash.json", signed(Metadata(Snapshot(version=2, expires=VALID, meta={"targets.json": MetaFile(2)})), k_snap))
    write("snapshot3_nohash.json", signed(Metadata(Snapshot(version=3, expires=VALID, meta={"targets.json": MetaFile(3), "pump.json": MetaFile(1)})), k_snap))

    def ts(version: int, snap_name: str, snap_v: int, exp=VALID, hashes=True) -> Metadata:
        data = (OUT / snap_name).read_bytes()
        mf = MetaFile.from_data(snap_v, data, ["sha256"]) if hashes else MetaFile(snap_v)
        return Metadata(Timestamp(version=version, expires=exp, snapshot_meta=mf))

    write("timestamp2.json", signed(ts(2, "snapshot2.json", 2), k_ts))
    write("timestamp3.json", signed(ts(3, "snapshot3.json", 3), k_ts))
    write("timestamp2_nohash.json", signed(ts(2, "snapshot2_nohash.json", 2), k_ts))
    write("timestamp3_nohash.json", signed(ts(3, "snapshot3_nohash.json", 3), k_ts))
    write("timestamp4_targets_rollback.json", signed(ts(4, "snapshot4_targets_rollback.json", 4), k_ts))
    write("timestamp4_drops_pump.json", signed(ts(4, "snapshot4_drops_pump.json", 4), k_ts))
    write("timestamp2_expired.json", signed(ts(2, "snapshot2.json", 2, exp=EXPIRED), k_ts))
    write("timestamp2_snapexpired.json", signed(ts(2, "snapshot2_expired.json", 2), k_ts))
    write("timestamp2_badsnap.json", signed(ts(2, "snapshot2_badsig.json", 2), k_ts))
    write("timestamp2_wrongkey.json", signed(ts(2, "snapshot2.json", 2), k_evil))
    # same version 3 but lists an older snapshot version: rollback of snapshot
    write("timestamp4_snap_rollback.json", signed(ts(4, "snapshot2.json", 2), k_ts))
    # timestamp listing a snapshot version that does not match the file
    write("timestamp2_snapv9.json", signed(ts(2, "snapshot2.json", 9, hashes=False), k_ts))
    # flip one signature hex digit
    raw = json.loads((OUT / "timestamp2.json").read_bytes())
    sig = raw["signatures"][0]["sig"]
    raw["signatures"][0]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    write("timestamp2_badsig.json", json.dumps(raw).encode())
    # two signatures with the same keyid (must not count twice; parse error)
    raw = json.loads((OUT / "timestamp2.json").read_bytes())
    raw["signatures"].append(dict(raw["signatures"][0]))
    write("timestamp2_dupsig.json", json.dumps(raw).encode())
    # a signed field changed after signing
    raw = json.loads((OUT / "timestamp2.json").read_bytes())
    raw["signed"]["version"] = 7
    write("timestamp2_tampered.json", json.dumps(raw).encode())

    # Path/hash-bin vectors computed by python-tuf itself.
    patterns = ["pump/*", "*", "*.bin", "fw/??.bin", "fw/[ab]*.bin", "fw/[!ab]*", "a/*/c", "[]]x", "[!]]x", "x[", "*/*", "fw/[a-c].bin", "fw/[c-a].bin"]
    paths = ["pump/fw.bin", "pump/a/b", "fw/ab.bin", "fw/abc.bin", "fw/b1.bin", "fw/z.bin", "a/b/c", "a//c", "]x", "ax", "x[", "fw/b.bin", "fw/d.bin", "", "fw/"]
    path_vectors = []
    for pat in patterns:
        role = DelegatedRole("r", [], 1, False, [pat])
        for p in paths:
            path_vectors.append([p, pat, role.is_delegated_path(p)])
    bins = DelegatedRole("bins", [], 1, False, None, ["0", "1", "2", "3"])
    hash_vectors = [[p, bins.is_delegated_path(p)] for p in ["fw/app.bin", "a", "b", "c", "d", "e", "pump/fw.bin"]]
    succ = SuccinctRoles([], 1, 5, "bin")
    succinct_vectors = [[p, succ.get_role_for_target(p)] for p in ["fw/app.bin", "a", "b", "c/d", "x" * 40]]
    vectors = {
        "ref_time": REF_TIME,
        "expires_vectors": [[s, int(dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp())] for s in ["2030-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "2024-02-29T23:59:59Z", "2100-12-31T12:34:56Z", "2000-03-01T00:00:00Z"]],
        "path_vectors": path_vectors,
        "hash_vectors": hash_vectors,
        "succinct_vectors": succinct_vectors,
        "target_fw_sha256": tf.hashes["sha256"],
        "negative": {
            # file fed at the given step -> expected exception class name
            "root2_only_new.json": "UnsignedMetadataError",
            "root2_only_old.json": "UnsignedMetadataError",
            "root3_as_next_of_1.json": "BadVersionNumberError",
            "timestamp2_expired.json": "ExpiredMetadataError",
            "timestamp2_badsig.json": "UnsignedMetadataError",
            "timestamp2_dupsig.json": "FormatError",
            "timestamp2_tampered.json": "UnsignedMetadataError",
            "timestamp2_wrongkey.json": "UnsignedMetadataError",
        },
    }
    write("vectors.json", json.dumps(vectors, indent=1).encode())
    print("fixtures written to", OUT)


if __name__ == "__main__":
    main()
