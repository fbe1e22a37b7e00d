"""More differential steps against python-tuf's ngclient (see
test_tuf_differential.py): the checks whose absence other TUF clients
shipped as CVEs (tough CVE-2025-2886/2887/2888: terminating delegations,
delegated-role rollback in snapshot, timestamp cached although its snapshot
version rolled back), hash-bin delegation, expired delegated roles. Both
clients must reach the same decision and keep the same trusted versions."""
from __future__ import annotations

import datetime as dt

import pytest
from tuf.api.metadata import MetaFile

from tests.e2e.tuf_client_fixtures import run_differential, tuf_env

A = b"pump firmware A\n" * 20
B = b"pump firmware B\n" * 20


def s_setup(env):
    env.repo.delegate("targets", "pump", paths=["pump/*"])
    env.repo.add_target("pump/fw.bin", A, role="pump")
    env.repo.publish()
    env.repo.add_target("pump/fw.bin", B, role="pump")  # pump v2
    env.repo.publish()
    return ["pump/fw.bin"]


def s_delegated_rollback(env):
    # snapshot (and timestamp) keys held by an attacker: the new snapshot
    # lists an older version of a delegated role
    env.saved["pump_v"] = env.repo.md["pump"].signed.version
    env.repo.md["snapshot"].signed.meta["pump.json"] = MetaFile(version=env.saved["pump_v"] - 1)
    env.repo.publish()
    return ["pump/fw.bin"]


def s_delegated_dropped(env):
    del env.repo.md["snapshot"].signed.meta["pump.json"]
    env.repo.publish()
    return ["pump/fw.bin"]


def s_restore(env):
    env.repo.md["snapshot"].signed.meta["pump.json"] = MetaFile(version=env.saved["pump_v"])
    env.repo.publish()
    return ["pump/fw.bin"]


def s_timestamp_lists_older_snapshot(env):
    # a validly signed timestamp whose snapshot version goes back: refused,
    # and the trusted timestamp must not move (nothing cached)
    ts = env.repo.md["timestamp"].signed
    ts.version += 1
    ts.snapshot_meta = MetaFile(version=ts.snapshot_meta.version - 1)
    env.repo.write_metadata("timestamp", env.repo.sign_bytes("timestamp"))
    env.saved["ts_trusted"] = ts.version - 1
    return ["pump/fw.bin"]


def s_fixed_timestamp(env):
    env.repo.publish()  # next snapshot, timestamp listing it
    return ["pump/fw.bin"]


def s_terminating_shadows(env):
    # "gate" (terminating, listed first) is responsible for pump/* but does
    # not list pump/extra.bin; "late" lists it: never reached.
    t = env.repo.md["targets"].signed
    env.repo.delegate("targets", "gate", paths=["pump/*"], terminating=True)
    env.repo.delegate("targets", "late", paths=["pump/*"])
    env.repo.add_target("pump/extra.bin", A, role="late")
    # put the new roles ahead of "pump" in delegation order
    roles = t.delegations.roles
    t.delegations.roles = {k: roles[k] for k in ("gate", "late", "pump")}
    env.repo.publish()
    return ["pump/extra.bin"]


def s_terminating_lists_it(env):
    env.repo.add_target("pump/extra.bin", B, role="gate")
    env.repo.publish()
    return ["pump/extra.bin"]


def s_hash_bins(env):
    # the terminating role hands its paths on to four hash bins
    env.repo.delegate_hash_bins("gate", 2)
    names = []
    for i in range(4):
        p = f"pump/bin{i}.bin"
        env.repo.add_target(p, A + bytes([i]), role=env.repo.bin_for(p))
        names.append(p)
    env.repo.publish()
    return names


def s_expired_delegated(env):
    env.repo.set_expiry("gate", dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=5))
    env.repo.publish()
    return ["pump/extra.bin"]


STEPS = [
    ("setup", s_setup, True),
    ("delegated_rollback", s_delegated_rollback, False),
    ("delegated_dropped", s_delegated_dropped, False),
    ("restore", s_restore, True),
    ("timestamp_lists_older_snapshot", s_timestamp_lists_older_snapshot, False),
    ("fixed_timestamp", s_fixed_timestamp, True),
    ("terminating_shadows", s_terminating_shadows, False),
    ("terminating_lists_it", s_terminating_lists_it, True),
    ("hash_bins", s_hash_bins, True),
    ("expired_delegated", s_expired_delegated, False),
]


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_same_decisions_as_python_tuf_delegations(tmp_path, runtime):
    def check(name, env, ours_v, r):
        if name == "timestamp_lists_older_snapshot":
            assert ours_v["timestamp"] == env.saved["ts_trusted"], (ours_v, r.out)

    with tuf_env(tmp_path, runtime, consistent_snapshot=True) as env:
        env.saved = {}
        run_differential(env, tmp_path, STEPS, check=check)
