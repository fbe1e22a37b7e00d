"""A staged rollout on real simulated boards: provisioned pumps (their device
ids decide their buckets), the real broker and collector, the real release
tooling and TUF repository served over loopback. At 50 % only the board whose
bucket is below 50 installs and confirms, the other keeps checking and stays on
1.0.0; `advance` reads the confirmation from fleet.db, signs stage 100, the
second board updates, and the rollout completes. A release that fails its
health check rolls back on the board in the stage, `advance` sees the rollback
in fleet.db and halts the rollout by itself (stage 0, signed), and the board
outside the stage never installs it.

Heap: 384 KiB, as the demo's boards and test_telemetry_board_powercut.py. On
integ2 a PROVISIONED board (live TLS session + telemetry) runs out of memory in
its TUF check at 256 KiB before any rollout code runs (measured with this
test at 256k: "out of memory" at every check, 44 KB free, telemetry not even
connected). The rollout's own device cost is ~400 bytes (see the report);
unprovisioned boards (test_update_*.py) stay at 256 KiB."""
from __future__ import annotations

import contextlib
import time

from host_tools.fleet.rollout_health import stage_health
from host_tools.release.quickstart import DemoPassphrases, device_tree, ensure_models, publish_tree
from host_tools.release.rollout import advance_rollout, start_rollout
from host_tools.release.serve import RepositoryServer
from host_tools.release.session import open_session
from tests.e2e.telemetry_board_fixtures import board_fleet
from tests.e2e.test_update_board import BAD_SELFTEST
from updater.install import policy

PASS = DemoPassphrases("rollout-e2e")
MODEL = "pump-v2"
HEAP = "384k"  # see the docstring: provisioned boards with updates, not the rollout, need it


def _pick(sha, lo, hi):
    for i in range(1000):
        dev = f"pump-r{i}"
        if lo <= policy.rollout_bucket(dev, sha) < hi:
            return dev
    raise AssertionError("no device id")


def _on(f, name, version, timeout):
    return f.boards.wait_for(name, lambda s: (s.get("device") or {}).get("version") == version
                             and ((s["device"].get("update") or {}).get("step") == "confirmed"),
                             timeout, f"{name} confirmed {version}")


@contextlib.contextmanager
def staged_boards(tmp_path, overrides, trial_deadline_s):
    """Release 1.1.0 published held, two provisioned boards: one whose bucket is
    below 50, one above; yields (fleet, work, sha, inside, outside)."""
    work = tmp_path / "work"
    root = ensure_models(work, PASS, (MODEL,))
    rel = publish_tree(work, PASS, MODEL, "1.1.0", 2, device_tree(tmp_path / "tree", overrides), held=True)
    with open_session(work, PASS) as s:
        sha = s.repo.md(MODEL).signed.targets[rel.target].custom["manifest_sha256"]
    inside, outside = _pick(sha, 0, 50), _pick(sha, 50, 100)
    with board_fleet(tmp_path, [(inside, MODEL), (outside, MODEL)]) as f, \
            RepositoryServer(work / "repository") as repo:
        cfg = {"update": {"metadata_url": repo.url + "/metadata", "targets_url": repo.url + "/targets",
                          "check_every_s": 2, "trial_deadline_s": trial_deadline_s, "health_loops": 3}}
        for name in (inside, outside):
            f.provision(name, f.start_board(name, MODEL, heap=HEAP), config=cfg, tuf_root=root.read_bytes())
        with open_session(work, PASS) as s:
            start_rollout(s, MODEL, "1.1.0", [50, 100], halt_on_rollback=0.2)
        yield f, work, sha, inside, outside


def _stays_on_1_0_0(f, name):
    """The board outside the stage checked (up_to_date) and installed nothing."""
    st = f.boards.wait_for(name, lambda s: any(u.get("step") == "up_to_date" for u in
                                               s.get("update_history", [])[-5:]), 30, "a check")
    assert st["device"]["version"] == "1.0.0"
    assert not {"available", "installed"} & {u.get("step") for u in st["update_history"]}, st["update_history"]


def _health(f, work, sha, done, timeout=30):
    """Stage health once `done(h)` holds (reports reach fleet.db via broker and collector)."""
    deadline = time.monotonic() + timeout
    while True:
        f.collector.flush()
        h = stage_health(work, MODEL, "1.1.0", sha, 50)
        if done(h) or time.monotonic() > deadline:
            return h
        time.sleep(0.5)


def test_staged_rollout_on_boards_only_the_stage_updates_then_all(tmp_path):
    with staged_boards(tmp_path, {"agent/release.txt": b"1.1.0\n"}, 30) as (f, work, sha, inside, outside):
        st = _on(f, inside, "1.1.0", 180)
        assert st["device"]["slot"] == "b"
        _stays_on_1_0_0(f, outside)
        h = _health(f, work, sha, lambda h: h.confirmed == [inside])
        assert h.in_stage == [inside] and h.confirmed == [inside], h
        with open_session(work, PASS) as s:
            result, why, plan = advance_rollout(s, MODEL, "1.1.0")
        assert (result, plan["percent"]) == ("advanced", 100), why
        _on(f, outside, "1.1.0", 180)
        f.collector.flush()
        with open_session(work, PASS) as s:
            assert advance_rollout(s, MODEL, "1.1.0")[0] == "complete"
        for name in (inside, outside):
            heap = f.boards.status(name)["device"].get("heap_free")
            print(f"{name}: heap_free {heap}")


def test_a_release_that_rolls_back_in_the_stage_halts_the_rollout_by_itself(tmp_path):
    with staged_boards(tmp_path, {"agent/selftest.py": BAD_SELFTEST}, 8) as (f, work, sha, inside, outside):
        st = f.boards.wait_for(inside, lambda s: any(e.get("type") == "rolled_back" for e in
                                                     (s.get("device") or {}).get("boot_events", [])), 150, "rollback")
        assert st["device"]["version"] == "1.0.0"
        h = _health(f, work, sha, lambda h: h.rolled_back == [inside], 60)
        assert h.rolled_back == [inside] and not h.confirmed, h
        with open_session(work, PASS) as s:
            result, why, plan = advance_rollout(s, MODEL, "1.1.0")
        assert result == "halted" and plan["percent"] == 0 and inside in why, why
        with open_session(work, PASS) as s:
            custom = s.repo.md(MODEL).signed.targets["pump-v2/pump-v2-1.1.0.mspk"].custom
        assert custom["rollout_percent"] == 0
        _stays_on_1_0_0(f, outside)
