"""One scenario per attack named in the TUF specification (section 1.5.2),
each run through `medsentry-tuf-client` on MicroPython and on CPython.

Every scenario first shows the client accepting the legitimate repository
state (so a failure later is caused by the attack, not by the setup), then
mounts the attack and checks the exit status and the reason printed.
"""
from __future__ import annotations

import datetime as dt
import time

import pytest

from tests.e2e.tuf_client_fixtures import RUNTIMES, fails, ok, tuf_env, tuf_repo

FW = b"medsentry firmware image\n" * 40  # 1000 bytes
FW2 = b"MEDSENTRY FIRMWARE IMAGE\n" * 40  # same length, other content


def _publish_fw(env, path="fw/app.bin", data=FW, role="targets"):
    env.repo.add_target(path, data, role=role)
    env.repo.publish()


def arbitrary_installation(env):
    # The mirror replaces the target file with other content of the same length.
    _publish_fw(env)
    url_path = env.repo.target_url_path("fw/app.bin")
    (env.repo.targets_dir / url_path).write_bytes(b"X" * len(FW))
    r = fails(env.client.download("fw/app.bin"), "repository", "LengthOrHashMismatchError")
    assert not env.client.target_file("fw/app.bin").exists()
    assert not list(env.client.target_dir.glob("*.part")), r.out


def endless_data_target(env):
    _publish_fw(env)
    env.server.misbehave("/targets/" + env.repo.target_url_path("fw/app.bin"), "endless")
    t0 = time.monotonic()
    fails(env.client.download("fw/app.bin"), "download", "DownloadLengthMismatchError")
    assert time.monotonic() - t0 < 20


def endless_data_metadata(env):
    ok(env.client.refresh())
    env.server.misbehave("/metadata/timestamp.json", "endless")
    fails(env.client.refresh(), "DownloadLengthMismatchError")
    env.server.reset()
    env.server.misbehave("/metadata/2.root.json", "endless")
    fails(env.client.refresh(), "DownloadLengthMismatchError")


def extraneous_dependencies(env):
    # A file that is on the mirror but listed by no trusted role is never
    # fetched, even when asked for.
    _publish_fw(env)
    (env.repo.targets_dir / "extra").mkdir()
    (env.repo.targets_dir / "extra" / "malware.bin").write_bytes(b"evil")
    env.server.requests.clear()
    fails(env.client.download("fw/app.bin", "extra/malware.bin"), "repository", "not listed")
    assert env.client.target_file("fw/app.bin").read_bytes() == FW
    assert not any("malware" in p for p in env.server.requests)


def fast_forward(env):
    # An attacker holding the timestamp key pushes the version far ahead; the
    # repository recovers by rotating the timestamp key, after which the
    # client must accept the lower, legitimate version again (5.3.11).
    ok(env.client.refresh())
    ts = env.repo.md["timestamp"].signed
    saved = ts.version
    ts.version = 1000
    env.repo.write_metadata("timestamp", env.repo.sign_bytes("timestamp"))
    ok(env.client.refresh())
    assert env.client.trusted_versions()["timestamp"] == 1000
    ts.version = saved
    env.repo.publish()  # legitimate timestamp v3, still the old key
    fails(env.client.refresh(), "BadVersionNumberError")
    env.repo.rotate("timestamp")
    env.repo.publish_root()
    env.repo.publish()
    r = ok(env.client.refresh())
    assert "rotated" in r.out
    assert env.client.trusted_versions()["timestamp"] == ts.version < 1000


def indefinite_freeze(env):
    ok(env.client.refresh())
    past = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(hours=1)
    env.repo.set_expiry("timestamp", past)
    env.repo.publish()
    fails(env.client.refresh(), "ExpiredMetadataError", "timestamp")


def indefinite_freeze_faketime(env):
    # The device reads the system clock: libfaketime moves it past expiry.
    _publish_fw(env)
    ok(env.client.refresh())
    env.client.prefix = ["faketime", "-f", "+30d"]
    fails(env.client.refresh(), "ExpiredMetadataError")
    env.client.prefix = ["faketime", "-f", "+1d"]
    ok(env.client.refresh())


def malicious_mirror(env):
    # A mirror serves well-formed metadata signed by a key the root does not list.
    ok(env.client.refresh())
    attacker = tuf_repo.new_signer("ed25519")
    env.repo.md["timestamp"].signed.version += 5
    env.server.misbehave("/metadata/timestamp.json", "replace", data=env.repo.sign_bytes("timestamp", [attacker]))
    fails(env.client.refresh(), "UnsignedMetadataError")


def mix_and_match(env):
    # Old targets metadata combined with the current snapshot.
    _publish_fw(env)
    v_old = env.repo.md["targets"].signed.version
    old = env.repo.metadata_path("targets", v_old if env.repo.consistent_snapshot else None).read_bytes()
    env.repo.add_target("fw/app.bin", FW2)
    env.repo.publish()
    v_new = env.repo.md["targets"].signed.version
    name = f"{v_new}.targets.json" if env.repo.consistent_snapshot else "targets.json"
    env.server.misbehave("/metadata/" + name, "replace", data=old)
    fails(env.client.download("fw/app.bin"), "BadVersionNumberError")


def mix_and_match_hashes(env):
    # With hashes in snapshot meta, a swapped file is caught by hash.
    env.repo.meta_hashes = True
    _publish_fw(env)
    ok(env.client.refresh())
    env.repo.add_target("fw/app.bin", FW2)
    env.repo.publish()
    snap = env.repo.metadata_path("snapshot", env.repo.md["snapshot"].signed.version if env.repo.consistent_snapshot else None)
    data = snap.read_bytes().replace(b"{\n", b"{ ", 1)  # same length and JSON, other bytes
    snap.write_bytes(data)
    fails(env.client.refresh(), "LengthOrHashMismatchError")


def rollback(env):
    _publish_fw(env)
    ok(env.client.refresh())
    old_ts = (env.repo.metadata_dir / "timestamp.json").read_bytes()
    env.repo.add_target("fw/app.bin", FW2)
    env.repo.publish()
    ok(env.client.refresh())
    env.server.misbehave("/metadata/timestamp.json", "replace", data=old_ts)
    fails(env.client.refresh(), "BadVersionNumberError")
    assert env.client.trusted_versions()["timestamp"] == env.repo.md["timestamp"].signed.version


def rollback_targets_version(env):
    # Snapshot and timestamp keys compromised: snapshot lists an older targets.
    _publish_fw(env)
    env.repo.add_target("fw/app.bin", FW2)
    env.repo.publish()
    ok(env.client.refresh())
    snap = env.repo.md["snapshot"].signed
    snap.meta["targets.json"].version -= 1
    env.repo.publish()
    fails(env.client.refresh(), "BadVersionNumberError")


def slow_retrieval(env):
    env.repo.add_target("fw/big.bin", FW * 8)
    env.repo.publish()
    env.server.misbehave("/targets/" + env.repo.target_url_path("fw/big.bin"), "slow", rate=100)
    t0 = time.monotonic()
    fails(env.client.download("fw/big.bin"), "SlowRetrievalError")
    assert time.monotonic() - t0 < 15
    env.server.reset()
    env.server.misbehave("/metadata/timestamp.json", "stall")
    fails(env.client.refresh(), "SlowRetrievalError")


def key_compromise_below_threshold(env):
    env.repo.rotate("targets", nkeys=2, threshold=2)
    env.repo.publish_root()
    env.repo.bump("targets")
    _publish_fw(env)
    ok(env.client.download("fw/app.bin"))
    # The attacker holds one of the two targets keys (and can make the rest
    # of the chain match): one signature is not enough.
    env.repo.md["targets"].signed.targets["fw/evil.bin"] = tuf_repo.TargetFile.from_data("fw/evil.bin", b"evil")
    env.repo.md["targets"].signed.version += 1
    data = env.repo.sign_bytes("targets", env.repo.signers["targets"][:1])
    env.repo.write_metadata("targets", data, env.repo.md["targets"].signed.version if env.repo.consistent_snapshot else None)
    env.repo._written.add("targets")
    env.repo._update_snapshot_meta("targets")
    env.repo.publish()
    fails(env.client.download("fw/evil.bin"), "UnsignedMetadataError")


def wrong_software(env):
    # The mirror answers the request for one target with another, validly
    # signed target's content.
    env.repo.add_target("fw/pump.bin", FW)
    env.repo.add_target("fw/monitor.bin", FW2)
    env.repo.publish()
    other = (env.repo.targets_dir / env.repo.target_url_path("fw/monitor.bin")).read_bytes()
    env.server.misbehave("/targets/" + env.repo.target_url_path("fw/pump.bin"), "replace", data=other)
    fails(env.client.download("fw/pump.bin"), "LengthOrHashMismatchError")


def wrong_software_delegation(env):
    # A delegated role lists a target outside the paths it was trusted for.
    env.repo.delegate("targets", "monitor-team", paths=["monitor/*"])
    env.repo.add_target("monitor/fw.bin", FW, role="monitor-team")
    env.repo.add_target("pump/fw.bin", FW2, role="monitor-team")
    env.repo.publish()
    ok(env.client.download("monitor/fw.bin"))
    fails(env.client.download("pump/fw.bin"), "not listed")


SCENARIOS = {
    "arbitrary_installation": arbitrary_installation,
    "endless_data_target": endless_data_target,
    "endless_data_metadata": endless_data_metadata,
    "extraneous_dependencies": extraneous_dependencies,
    "fast_forward": fast_forward,
    "indefinite_freeze": indefinite_freeze,
    "indefinite_freeze_faketime": indefinite_freeze_faketime,
    "malicious_mirror": malicious_mirror,
    "mix_and_match": mix_and_match,
    "mix_and_match_hashes": mix_and_match_hashes,
    "rollback": rollback,
    "rollback_targets_version": rollback_targets_version,
    "slow_retrieval": slow_retrieval,
    "key_compromise_below_threshold": key_compromise_below_threshold,
    "wrong_software": wrong_software,
    "wrong_software_delegation": wrong_software_delegation,
}


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_attack(tmp_path, name, runtime):
    with tuf_env(tmp_path, runtime) as env:
        SCENARIOS[name](env)
