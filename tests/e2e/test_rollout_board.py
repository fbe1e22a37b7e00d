"""A staged rollout on real simulated boards: provisioned pumps (their device
ids decide their buckets), the real broker and collector, the real release
tooling and TUF repository served over loopback. At 50 % only the board whose
bucket is below 50 installs and confirms, the other keeps checking and stays on
1.0.0; `advance` reads the confirmation from fleet.db, signs stage 100, the
second board updates, and the rollout completes.

Heap: 384 KiB, as the demo's boards and test_telemetry_board_powercut.py. On
integ2 a PROVISIONED board (live TLS session + telemetry) runs out of memory in
its TUF check at 256 KiB before any rollout code runs (measured with this
test at 256k: "out of memory" at every check, 44 KB free, telemetry not even
connected). The rollout's own device cost is ~400 bytes (see the report);
unprovisioned boards (test_update_*.py) stay at 256 KiB."""
from __future__ import annotations

import time

from host_tools.fleet.rollout_health import stage_health
from host_tools.release.quickstart import DemoPassphrases, device_tree, ensure_models, publish_tree
from host_tools.release.rollout import advance_rollout, start_rollout
from host_tools.release.serve import RepositoryServer
from host_tools.release.session import open_session
from tests.e2e.telemetry_board_fixtures import board_fleet
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


def test_staged_rollout_on_boards_only_the_stage_updates_then_all(tmp_path):
    work = tmp_path / "work"
    root = ensure_models(work, PASS, (MODEL,))
    rel = publish_tree(work, PASS, MODEL, "1.1.0", 2, device_tree(tmp_path / "tree", {"agent/release.txt": b"1.1.0\n"}),
                       held=True)
    with open_session(work, PASS) as s:
        sha = s.repo.md(MODEL).signed.targets[rel.target].custom["manifest_sha256"]
    inside, outside = _pick(sha, 0, 50), _pick(sha, 50, 100)
    with board_fleet(tmp_path, [(inside, MODEL), (outside, MODEL)]) as f, \
            RepositoryServer(work / "repository") as repo:
        cfg = {"update": {"metadata_url": repo.url + "/metadata", "targets_url": repo.url + "/targets",
                          "check_every_s": 2, "trial_deadline_s": 30, "health_loops": 3}}
        for name in (inside, outside):
            f.provision(name, f.start_board(name, MODEL, heap=HEAP), config=cfg, tuf_root=root.read_bytes())
        with open_session(work, PASS) as s:
            start_rollout(s, MODEL, "1.1.0", [50, 100])
        st = _on(f, inside, "1.1.0", 180)
        assert st["device"]["slot"] == "b"
        # the board outside the stage checked (it reports up_to_date) and installed nothing
        out = f.boards.wait_for(outside, lambda s: any(u.get("step") == "up_to_date" for u in
                                                       s.get("update_history", [])[-5:]), 30, "a check")
        assert out["device"]["version"] == "1.0.0"
        assert not {"available", "installed"} & {u.get("step") for u in out["update_history"]}, out["update_history"]
        deadline = time.monotonic() + 30
        while True:  # the confirmation reaches fleet.db through broker and collector
            f.collector.flush()
            h = stage_health(work, MODEL, "1.1.0", sha, 50)
            if h.confirmed == [inside] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
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
