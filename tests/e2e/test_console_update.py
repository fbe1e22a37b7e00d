"""A technician logged in on the maintenance console while a provisioned board
checks, downloads and installs an update: the shell's heap does not starve
the update (in round 2 the board a technician had used stayed on 1.0.0: "out
of memory").

The heap is SESSION_HEAP (392k), 8k above test_update_attacks.HEAP (384k),
the one every other provisioned-board update test uses (why: below). On integ2
a provisioned pump ran out of memory in its first update check at 256k and at
320k with no console at all (identity and telemetry stack resident; see
/work/reports/r3-console.md, "heap")."""
from __future__ import annotations

import pyotp

from host_tools.console import store
from host_tools.console.session import Session
from host_tools.pki import FleetPKI
from host_tools.provision import BrokerAddress, provision
from tests.e2e.sim_fixtures import sim_boards
from tests.e2e.test_update_attacks import confirmed, repo  # noqa: F401 (module fixture)
from tests.e2e.test_update_board import publish, steps

# An update check with a technician's session open: the check's peak (the TUF
# client's ~80 KB at once) beside telemetry, the security monitor, the signed
# commands and the shell. At test_update_attacks.HEAP (384k) it ran out of
# memory in most layouts after 2026-12-04's changes (they lowered the resident
# heap, and moved where things fall); at 392k it passed 4 of 4 without one. At 384k the board retries
# with backoff and installs once the session is closed.
SESSION_HEAP = "392k"
DEV = "pump-cu"
MODEL = "pump-v2"
PW = "technician-pass-9"


def _heap_free(boards) -> int:
    n = boards.status(DEV)["device"]["loops"]
    st = boards.wait_for(DEV, lambda x: (x.get("device") or {}).get("loops", 0) >= n + 2, 20, "status")
    return st["device"]["heap_free"]


def test_update_installs_while_a_technician_is_logged_in(repo, tmp_path):  # noqa: F811
    srv = repo["srv"]
    work = tmp_path / "work"
    store.add(work, MODEL, "tom", "technician", PW)
    secret = store.load(work, MODEL)["tom"]["totp"]
    pki = FleetPKI(work)
    pki.init()
    pki.issue(DEV, MODEL)
    with sim_boards(work) as boards:
        port = boards.start(DEV, model=MODEL, heap=SESSION_HEAP)["port"]
        # Checks only at boot and when asked: a periodic check could find 1.1.0 and
        # reset the board into its trial before check-updates answered (seen under load).
        cfg = {"update": {"metadata_url": srv.url + "/metadata", "targets_url": srv.url + "/targets",
                          "check_every_s": 3600, "trial_deadline_s": 20, "health_loops": 3}}
        provision(pki, DEV, port, BrokerAddress("127.0.0.1", 18885), config=cfg, tuf_root=repo["root"],
                  accounts=lambda model: store.for_board(work, DEV, model))
        st = boards.wait_for(DEV, lambda x: bool({"up_to_date", "error"} & set(steps(x))), 60, "a first check")
        assert "up_to_date" in steps(st), st["update_history"][-4:]
        idle = _heap_free(boards)
        with Session(boards.status(DEV)["port"], timeout=20) as s:
            s.login("tom", PW, pyotp.TOTP(secret).now())
            assert '"version": "1.0.0"' in s.run("version")
            in_session = _heap_free(boards)
            seen = len(boards.status(DEV)["update_history"])
            publish(repo, MODEL, "1.1.0", 2, {"agent/release.txt": b"1.1.0\n"})
            assert "at the next tick" in s.run("check-updates")
            # The session stays open through the check, download and install;
            # the board's reset into the trial ends it. The heap is at its edge
            # here (a check fails at 376-380k in some layouts): a check that runs
            # out of memory is retried after updates.OOM_RETRY_S (20 s; before,
            # an hourly board waited an hour), so at most one such failure.
            def settled(x):
                later = steps(x)[seen:]
                return "installed" in later or "rejected" in later or later.count("error") > 1
            st = boards.wait_for(DEV, settled, 120, "the install")
        later = st["update_history"][seen:]
        assert "installed" in steps(st)[seen:], later
        ooms = [u for u in later if u.get("reason") == "out of memory"]
        assert len(ooms) <= 1 and all(u.get("retry_in_s") == 20 for u in ooms), later
        st = boards.wait_for(DEV, confirmed("1.1.0"), 120, "1.1.0 confirmed")
        assert st["device"]["security_counter"] == 2
        hist = " ".join(str(u) for u in st["update_history"][seen + len(later):])
        assert "out of memory" not in hist and "MemoryError" not in hist, hist[-2000:]
        if ooms:
            print(f"one check ran out of memory and was retried: {ooms[0]}")
        assert in_session < idle - 10_000, (idle, in_session)  # the shell was loaded meanwhile
        print(f"heap_free idle {idle}, in a session {in_session}")
