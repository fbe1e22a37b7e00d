"""Differential test: python-tuf's ngclient.Updater and our device client
(on the MicroPython VM, through `medsentry-tuf-client`) walk the same
repository history, attacks included, and must reach the same accept/reject
decision at every step and keep the same trusted metadata versions."""
from __future__ import annotations

import datetime as dt

import pytest

from tests.e2e.tuf_client_fixtures import run_differential, tuf_env, tuf_repo

FW = b"firmware one\n" * 50
FW2 = b"firmware two\n" * 50


# Each step mutates the repository or the server; both clients then run
# "refresh + download these targets" and are compared.
def s_initial(env):
    env.repo.add_target("fw/app.bin", FW)
    env.repo.publish()
    env.saved["old_ts"] = (env.repo.metadata_dir / "timestamp.json").read_bytes()


def s_new_release(env):
    env.repo.add_target("fw/app.bin", FW2)
    env.repo.publish()


def s_rollback_timestamp(env):
    env.server.misbehave("/metadata/timestamp.json", "replace", data=env.saved.pop("old_ts"))


def s_root_rotation(env):
    env.repo.rotate("root", nkeys=2, threshold=2)
    env.repo.publish_root()
    env.repo.publish()


def s_expired_timestamp(env):
    env.repo.set_expiry("timestamp", dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=5))
    env.repo.publish()


def s_fixed_expiry(env):
    env.repo.set_expiry("timestamp", dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(days=1))
    env.repo.publish()


def s_fast_forward(env):
    ts = env.repo.md["timestamp"].signed
    env.saved["ts_version"] = ts.version
    ts.version = 999
    env.repo.write_metadata("timestamp", env.repo.sign_bytes("timestamp"))


def s_legit_after_ff_no_rotation(env):
    env.repo.md["timestamp"].signed.version = env.saved["ts_version"]
    env.repo.publish()


def s_recover_rotate_timestamp(env):
    env.repo.rotate("timestamp")
    env.repo.publish_root()
    env.repo.publish()


def s_tampered_target(env):
    env.repo.add_target("fw/app.bin", FW)
    env.repo.publish()
    env.server.misbehave("/targets/" + env.repo.target_url_path("fw/app.bin"), "replace", data=FW2)


def s_delegation(env):
    env.repo.delegate("targets", "pump", paths=["pump/*"], terminating=True)
    env.repo.add_target("pump/fw.bin", FW2, role="pump")
    env.repo.publish()
    env.names.append("pump/fw.bin")


def s_delegated_wrong_key(env):
    md = env.repo.md["pump"]
    md.signed.version += 1
    md.signed.targets.clear()
    md.signed.targets["pump/fw.bin"] = tuf_repo.TargetFile.from_data("pump/fw.bin", b"evil")
    data = env.repo.sign_bytes("pump", [tuf_repo.new_signer()])
    env.repo.write_metadata("pump", data, md.signed.version)
    env.repo._update_snapshot_meta("pump")
    env.repo.publish()


def s_fix_delegated(env):
    env.repo.add_target("pump/fw.bin", FW2, role="pump")
    env.repo.publish()


def s_root_only_new_keys(env):
    env.repo.rotate("root")
    env.repo._prev_root_signers = []
    env.repo.publish_root()


STEPS = [
    ("initial", s_initial, True),
    ("new_release", s_new_release, True),
    ("rollback_timestamp", s_rollback_timestamp, False),
    ("root_rotation", s_root_rotation, True),
    ("expired_timestamp", s_expired_timestamp, False),
    ("fixed_expiry", s_fixed_expiry, True),
    ("fast_forward", s_fast_forward, True),
    ("legit_after_ff_no_rotation", s_legit_after_ff_no_rotation, False),
    ("recover_rotate_timestamp", s_recover_rotate_timestamp, True),
    ("tampered_target", s_tampered_target, False),
    ("delegation", s_delegation, True),
    ("delegated_wrong_key", s_delegated_wrong_key, False),
    ("fix_delegated", s_fix_delegated, True),
    ("root_only_new_keys", s_root_only_new_keys, False),
]


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_same_decisions_as_python_tuf(tmp_path, runtime):
    with tuf_env(tmp_path, runtime, consistent_snapshot=True) as env:
        env.saved = {}
        env.names = ["fw/app.bin"]
        run_differential(env, tmp_path, STEPS)
