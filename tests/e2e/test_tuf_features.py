"""TUF client features end to end through `medsentry-tuf-client` on both
runtimes: key rotations, delegation graphs (paths, terminating, nesting,
cycles, hash bins, succinct bins, thresholds), consistent snapshots on and
off, each key type and hash algorithm, HTTPS, caching, redirects."""
from __future__ import annotations

import pytest

from tests.e2e.tuf_client_fixtures import Client, RUNTIMES, fails, ok, tuf_env

FW = b"medsentry firmware image\n" * 40


def basic_download(env):
    env.repo.add_target("fw/app.bin", FW, custom={"model": "pump-x", "version": "1.2.0"})
    env.repo.publish()
    r = ok(env.client.download("fw/app.bin"))
    assert env.client.target_file("fw/app.bin").read_bytes() == FW
    v = env.client.trusted_versions()
    assert v == {"root": 1, "timestamp": 2, "snapshot": 2, "targets": 2}, r.out
    # Second run: the file is already there with the right hashes.
    env.server.requests.clear()
    r = ok(env.client.download("fw/app.bin"))
    assert "already cached" in r.out
    assert not any(p.startswith("/targets/") for p in env.server.requests)
    # Tampered local copy is fetched again.
    env.client.target_file("fw/app.bin").write_bytes(b"x" * len(FW))
    ok(env.client.download("fw/app.bin"))
    assert env.client.target_file("fw/app.bin").read_bytes() == FW


def consistent_two_hashes(env):
    # Consistent snapshots with sha256+sha512: the file name is prefixed with
    # the first hash as python-tuf writes it (sorted keys: sha256). Only that
    # copy is left on the mirror.
    info = env.repo.add_target("fw/app.bin", FW)
    env.repo.publish()
    (env.repo.targets_dir / "fw" / f"{info.hashes['sha512']}.app.bin").unlink()
    (env.repo.targets_dir / "fw" / "app.bin").unlink()
    ok(env.client.download("fw/app.bin"))
    assert env.client.target_file("fw/app.bin").read_bytes() == FW


def root_rotation(env):
    # v1 -> v2 (new root keys, threshold 2) -> v3 (new timestamp key); the
    # client walks the chain one version at a time.
    env.repo.rotate("root", nkeys=2, threshold=2)
    env.repo.publish_root()
    env.repo.rotate("timestamp")
    env.repo.publish_root()
    env.repo.publish()
    ok(env.client.refresh())
    assert env.client.trusted_versions()["root"] == 3


def root_rotation_needs_old_keys(env):
    # A new root signed only by its own new keys is not trusted.
    env.repo.rotate("root")
    env.repo._prev_root_signers = []  # "forget" to sign with the old key
    env.repo.publish_root()
    fails(env.client.refresh(), "UnsignedMetadataError", "root")
    assert env.client.trusted_versions()["root"] == 1


def root_version_skip(env):
    # 2.root.json that claims version 3 is refused (version must be N+1).
    env.repo.md["root"].signed.version = 2
    data = env.repo.sign_bytes("root")
    env.repo.write_metadata("root", data, 3)
    env.server.misbehave("/metadata/2.root.json", "replace", data=env.repo.metadata_path("root", 3).read_bytes())
    fails(env.client.refresh(), "BadVersionNumberError")


def expired_intermediate_root(env):
    # An expired intermediate root is fine as long as the final one is valid.
    import datetime as dt

    env.repo.set_expiry("root", dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
    env.repo.publish_root()  # v2, expired
    env.repo.set_expiry("root", dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(days=3))
    env.repo.publish_root()  # v3, valid
    ok(env.client.refresh())
    assert env.client.trusted_versions()["root"] == 3


def expired_final_root(env):
    import datetime as dt

    env.repo.set_expiry("root", dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
    env.repo.publish_root()
    fails(env.client.refresh(), "ExpiredMetadataError", "root")


def targets_key_rotation(env):
    env.repo.add_target("fw/app.bin", FW)
    env.repo.publish()
    ok(env.client.refresh())
    env.repo.rotate("targets", key_type="ecdsa")
    env.repo.rotate("snapshot", key_type="rsa")
    env.repo.publish_root()
    env.repo.bump("targets")
    env.repo.publish()
    ok(env.client.download("fw/app.bin"))


def delegation_paths(env):
    env.repo.delegate("targets", "pump", paths=["pump/*", "shared/??.cfg"])
    env.repo.add_target("pump/fw.bin", FW, role="pump")
    env.repo.add_target("shared/ab.cfg", b"cfg", role="pump")
    env.repo.add_target("shared/abc.cfg", b"cfg", role="pump")  # not matched by ??.cfg
    env.repo.add_target("pump/sub/deep.bin", b"deep", role="pump")  # '*' stays in one segment
    env.repo.publish()
    ok(env.client.download("pump/fw.bin", "shared/ab.cfg"))
    fails(env.client.download("shared/abc.cfg"), "not listed")
    fails(env.client.download("pump/sub/deep.bin"), "not listed")


def delegation_terminating(env):
    # A (terminating, "*") has no entry: B, which lists it, is never asked.
    env.repo.delegate("targets", "A", paths=["*"], terminating=True)
    env.repo.delegate("targets", "B", paths=["*"])
    env.repo.add_target("app.bin", FW, role="B")
    env.repo.publish()
    env.server.requests.clear()
    fails(env.client.download("app.bin"), "not listed")
    assert not any("B.json" in p for p in env.server.requests), env.server.requests


def delegation_backtrack(env):
    # Same graph without terminating: the search backtracks to B.
    env.repo.delegate("targets", "A", paths=["*"])
    env.repo.delegate("targets", "B", paths=["*"])
    env.repo.add_target("app.bin", FW, role="B")
    env.repo.publish()
    r = ok(env.client.download("app.bin"))
    assert "found in B" in r.out


def delegation_order_and_nesting(env):
    # Preorder DFS: targets -> A -> A1 comes before B.
    env.repo.delegate("targets", "A", paths=["*"])
    env.repo.delegate("targets", "B", paths=["*"])
    env.repo.delegate("A", "A1", paths=["*"])
    env.repo.add_target("app.bin", FW, role="A1")
    env.repo.add_target("app.bin", FW + b"other", role="B")
    env.repo.publish()
    r = ok(env.client.download("app.bin"))
    assert "found in A1" in r.out
    assert env.client.target_file("app.bin").read_bytes() == FW


def delegation_cycle(env):
    # A -> B -> A: the walk ends (visited set) without the target.
    env.repo.delegate("targets", "A", paths=["*"])
    env.repo.delegate("A", "B", paths=["*"])
    t = env.repo.md["B"].signed
    from tuf.api.metadata import DelegatedRole, Delegations

    key = env.repo.signers["A"][0].public_key
    t.delegations = Delegations(keys={key.keyid: key}, roles={"A": DelegatedRole("A", [key.keyid], 1, False, ["*"])})
    env.repo.publish()
    fails(env.client.download("nowhere.bin"), "not listed")


def delegation_threshold(env):
    env.repo.delegate("targets", "team", paths=["*"], threshold=2, nkeys=2)
    env.repo.add_target("app.bin", FW, role="team")
    env.repo.publish()
    ok(env.client.download("app.bin"))
    # Only one of two signatures: refused.
    md = env.repo.md["team"]
    md.signed.targets.pop("app.bin")
    env.repo.add_target("app2.bin", FW, role="team")
    md.signed.version += 1
    data = env.repo.sign_bytes("team", env.repo.signers["team"][:1])
    env.repo.write_metadata("team", data, md.signed.version if env.repo.consistent_snapshot else None)
    env.repo._update_snapshot_meta("team")
    env.repo._dirty.discard("team")
    env.repo.publish()
    fails(env.client.download("app2.bin"), "UnsignedMetadataError")


def hash_bins(env):
    env.repo.delegate_hash_bins("targets", 2)
    paths = [f"fw/file{i}.bin" for i in range(6)]
    for p in paths:
        env.repo.add_target(p, p.encode() * 10, role=env.repo.bin_for(p))
    env.repo.publish()
    r = ok(env.client.download(*paths))
    for p in paths:
        assert f"found in {env.repo.bin_for(p)}" in r.out
        assert env.client.target_file(p).read_bytes() == p.encode() * 10


def succinct_hash_bins(env):
    env.repo.delegate_succinct("targets", 3, prefix="bins")
    paths = ["a.bin", "b.bin", "dir/c.bin"]
    for p in paths:
        env.repo.add_target(p, p.encode() * 5, role=env.repo.bin_for(p))
    env.repo.publish()
    r = ok(env.client.download(*paths))
    assert "found in bins-" in r.out


def delegated_role_reverified(env):
    # A role named like one delegated elsewhere is verified against the
    # delegator on the path being walked: B's keys, not A's, must sign "C"
    # when reached through B.
    env.repo.delegate("targets", "A", paths=["a/*"])
    env.repo.delegate("targets", "B", paths=["b/*"])
    env.repo.delegate("A", "C", paths=["a/*"])
    env.repo.add_target("a/x.bin", FW, role="C")
    env.repo.publish()
    # B also delegates "C" (same name) but with a different key.
    from tests.e2e.tuf_client_fixtures import tuf_repo

    other = tuf_repo.new_signer("ed25519")
    b = env.repo.md["B"].signed
    from tuf.api.metadata import DelegatedRole, Delegations

    b.delegations = Delegations(keys={other.public_key.keyid: other.public_key}, roles={"C": DelegatedRole("C", [other.public_key.keyid], 1, False, ["b/*"])})
    env.repo.bump("B")
    env.repo.publish()
    ok(env.client.download("a/x.bin"))
    # Looking up b/... walks targets -> B -> C: the stored C (signed by A's
    # delegate key) must not be trusted for B.
    fails(env.client.download("b/y.bin"), "UnsignedMetadataError")


def https_download(env):
    env.repo.add_target("fw/app.bin", FW)
    env.repo.publish()
    ok(env.client.download("fw/app.bin"))
    # A device that trusts another CA refuses the server.
    from tests.e2e.tuf_client_fixtures import tuf_repo

    other_ca, _c, _k = tuf_repo.make_test_pki(env.tmp / "otherpki")
    c2 = Client(env.tmp / "device2", env.server, env.client.runtime, ca_file=str(other_ca))
    ok(c2.init(env.repo.root_path(1)))
    fails(c2.refresh(), "download")


def redirects(env):
    env.repo.add_target("fw/app.bin", FW)
    env.repo.publish()
    env.server.misbehave("/metadata/timestamp.json", "redirect", location="/metadata/ts-moved.json")
    (env.repo.metadata_dir / "ts-moved.json").write_bytes((env.repo.metadata_dir / "timestamp.json").read_bytes())
    ok(env.client.download("fw/app.bin"))
    env.server.misbehave("/metadata/timestamp.json", "redirect", location="/metadata/timestamp.json")
    fails(env.client.refresh(), "TooManyRedirectsError")


def http_error_status(env):
    env.server.misbehave("/metadata/timestamp.json", "status", status=503)
    fails(env.client.refresh(), "DownloadHTTPError", "503")


FEATURES = {
    # name: (scenario, repo kwargs, https)
    "basic-cs": (basic_download, {"consistent_snapshot": True}, False),
    "basic-no-cs": (basic_download, {"consistent_snapshot": False}, False),
    "ecdsa": (basic_download, {"key_type": "ecdsa"}, False),
    "rsa": (basic_download, {"key_type": "rsa"}, False),
    "sha512": (basic_download, {"hash_algorithms": ("sha512",)}, False),
    "sha256+sha512": (basic_download, {"hash_algorithms": ("sha256", "sha512"), "consistent_snapshot": False}, False),
    "meta-hashes": (basic_download, {"meta_hashes": True}, False),
    "cs-two-hashes": (consistent_two_hashes, {"hash_algorithms": ("sha512", "sha256")}, False),
    "root_rotation": (root_rotation, {}, False),
    "root_rotation_needs_old_keys": (root_rotation_needs_old_keys, {}, False),
    "root_version_skip": (root_version_skip, {}, False),
    "expired_intermediate_root": (expired_intermediate_root, {}, False),
    "expired_final_root": (expired_final_root, {}, False),
    "targets_key_rotation": (targets_key_rotation, {"consistent_snapshot": False}, False),
    "delegation_paths": (delegation_paths, {}, False),
    "delegation_terminating": (delegation_terminating, {}, False),
    "delegation_backtrack": (delegation_backtrack, {"consistent_snapshot": False}, False),
    "delegation_order_and_nesting": (delegation_order_and_nesting, {}, False),
    "delegation_cycle": (delegation_cycle, {}, False),
    "delegation_threshold": (delegation_threshold, {}, False),
    "hash_bins": (hash_bins, {}, False),
    "succinct_hash_bins": (succinct_hash_bins, {"consistent_snapshot": False}, False),
    "delegated_role_reverified": (delegated_role_reverified, {}, False),
    "https": (https_download, {"key_type": "ecdsa"}, True),
    "redirects": (redirects, {"consistent_snapshot": False}, False),
    "http_error_status": (http_error_status, {}, False),
}


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", list(FEATURES))
def test_feature(tmp_path, name, runtime):
    fn, kw, https = FEATURES[name]
    with tuf_env(tmp_path, runtime, https=https, **kw) as env:
        fn(env)
