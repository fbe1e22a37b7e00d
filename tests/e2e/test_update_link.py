"""Updates over a slow link on simulated boards: an infusion that starts in
the middle of a download stops the install (it resumes later), and a download
longer than the watchdog period completes without a watchdog reset."""
from __future__ import annotations

import time

from tests.e2e.sim_fixtures import sim_boards
from tests.e2e.test_update_board import configure, publish, repo  # noqa: F401  (repo is a fixture)



def test_infusion_starting_mid_download_stops_the_install_and_it_resumes_later(repo, tmp_path):
    rel = publish(repo, "pump-v4", "1.1.0", 3, {"agent/release.txt": b"1.1.0\n", "agent/extra.txt": b"x" * 20000})
    srv = repo["srv"]
    pkg_url = "/targets/" + rel.target.rsplit("/", 1)[0] + "/" + rel.sha256 + "." + rel.target.rsplit("/", 1)[1]
    # A slow link: the download takes many seconds (longer than the watchdog
    # period, which the fetcher's tick keeps fed).
    srv.misbehave(pkg_url, "slow", rate=6000, limit_s=60)
    with sim_boards(tmp_path / "work") as boards:
        boards.start("pump-s", model="pump-v4")
        configure(boards, "pump-s", repo, "pump-v4")
        boards.wait_for("pump-s", lambda s: any(u.get("step") in ("available", "downloading")
                                                for u in s.get("update_history", [])), 60, "download start")
        boards.start_infusion("pump-s", rate_ml_h=50.0, vtbi_ml=100.0)
        st = boards.wait_for("pump-s", lambda s: any(u.get("step") == "deferred" and u.get("action") == "install"
                                                     for u in s.get("update_history", [])), 60, "install deferred")
        d = [u for u in st["update_history"] if u.get("step") == "deferred"][-1]
        assert d["reason"] == "infusion in progress"
        assert st["device"]["version"] == "1.0.0" and st["resets"].get("watchdog", 0) == 0
        srv.reset()
        boards.stop_infusion("pump-s")
        st = boards.wait_for("pump-s", lambda s: (s.get("device") or {}).get("version") == "1.1.0", 120, "1.1.0")
        assert st["resets"].get("watchdog", 0) == 0


def test_slow_download_longer_than_the_watchdog_period_completes(repo, tmp_path):
    import random

    # incompressible; with the app (about 470 KiB of 4 KiB blocks) it must fit the 512 KiB slot
    blob = random.Random(3).randbytes(36 * 1024)
    rel = publish(repo, "pump-v5", "1.1.0", 2, {"agent/release.txt": b"1.1.0\n", "agent/blob.bin": blob})
    srv = repo["srv"]
    pkg_url = "/targets/" + rel.target.rsplit("/", 1)[0] + "/" + rel.sha256 + "." + rel.target.rsplit("/", 1)[1]
    srv.misbehave(pkg_url, "slow", rate=5000, limit_s=90)
    with sim_boards(tmp_path / "work") as boards:
        boards.start("pump-l", model="pump-v5")
        configure(boards, "pump-l", repo, "pump-v5")
        boards.wait_for("pump-l", lambda s: any(u.get("step") == "available" for u in s.get("update_history", [])),
                        60, "release found")
        t0 = time.monotonic()
        st = boards.wait_for("pump-l", lambda s: any(u.get("step") == "installed" for u in s.get("update_history", [])),
                             120, "installed")
        took = time.monotonic() - t0
        assert took > 6, took  # longer than the 5 s watchdog
        st = boards.wait_for("pump-l", lambda s: (s.get("device") or {}).get("version") == "1.1.0", 60, "1.1.0")
        assert st["resets"].get("watchdog", 0) == 0, st["resets"]
    srv.reset()
