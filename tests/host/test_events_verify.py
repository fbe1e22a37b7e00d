"""`events verify`: the host check of a device's event chain (issue 12 section 2).

Entries come from the device's own log code (agent/security/eventlog.py, run
here on CPython); the tampering is applied to what the collector received:
every byte of a small log flipped, each entry deleted, neighbours swapped,
the tail cut off. Each must be named; the untouched log must verify.
"""
from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner

from agent.security.eventlog import EventLog
from host_tools.cli.main import cli
from host_tools.collector import FleetDB, eventchain, security_db
from host_tools.collector.records import Status


def make_log(tmp_path, n=5) -> list[bytes]:
    log = EventLog(str(tmp_path / "ev"))
    kinds = ["boot", "update_step", "tuf_failure", "integrity_violation", "clock_jump", "queue_drop"]
    return [log.append(kinds[i % len(kinds)], "info", {"i": i}, 1_700_000_000 + i)[1] for i in range(n)]


def head(entries: list[bytes]) -> tuple[int, bytes]:
    return len(entries), hashlib.sha256(entries[-1]).digest()


def kinds(rep: eventchain.ChainReport) -> set[str]:
    return {p.kind for p in rep.problems}


def test_untouched_log_verifies(tmp_path):
    e = make_log(tmp_path)
    rep = eventchain.verify(e + [e[-1]], [(2, hashlib.sha256(e[1]).digest()), head(e)])  # a resend is fine
    assert rep.ok and rep.entries == 5 and (rep.first, rep.last, rep.head) == (1, 5, 5)


def test_every_flipped_byte_is_found(tmp_path):
    e = make_log(tmp_path, 4)
    h = head(e)
    flips = 0
    for i, entry in enumerate(e):
        for j in range(len(entry)):
            for bit in (0x01, 0x80):
                bad = bytearray(entry)
                bad[j] ^= bit
                got = e[:i] + [bytes(bad)] + e[i + 1:]
                rep = eventchain.verify(got, [h])
                assert not rep.ok, (i, j, bit)
                assert kinds(rep) & {"edit", "malformed", "gap", "fork", "reorder", "truncation"}
                flips += 1
    assert flips > 400


@pytest.mark.parametrize("i", range(5))
def test_each_deleted_entry_is_named(tmp_path, i):
    e = make_log(tmp_path)
    rep = eventchain.verify(e[:i] + e[i + 1:], [head(e)])
    if i == 4:
        assert ("truncation", 5) in {(p.kind, p.n) for p in rep.problems}
    else:
        assert ("gap", i + 1) in {(p.kind, p.n) for p in rep.problems}, rep.problems


@pytest.mark.parametrize("i", range(4))
def test_swapped_neighbours_are_a_reorder(tmp_path, i):
    e = make_log(tmp_path)
    got = list(e)
    got[i], got[i + 1] = got[i + 1], got[i]
    rep = eventchain.verify(got, [head(e)])
    assert ("reorder", i + 1) in {(p.kind, p.n) for p in rep.problems}, rep.problems


@pytest.mark.parametrize("k", [1, 2, 4])
def test_truncated_tail_is_named(tmp_path, k):
    e = make_log(tmp_path)
    rep = eventchain.verify(e[:-k], [head(e)])
    assert kinds(rep) == {"truncation"}
    # A head that goes back (the device's log rolled back) is named too.
    rep = eventchain.verify(e, [head(e), (3, hashlib.sha256(e[2]).digest())])
    assert ("truncation", 3) in {(p.kind, p.n) for p in rep.problems}


def test_an_edited_entry_reencoded_with_a_fixed_chain_is_still_caught(tmp_path):
    # The attacker rewrites entry 3 and re-chains everything after it: the
    # head the device reported in posture no longer matches.
    e = make_log(tmp_path)
    log = EventLog(str(tmp_path / "forged"))
    forged = [log.append("boot", "info", {"i": i}, 1_700_000_000 + i)[1] for i in range(5)]
    rep = eventchain.verify(forged, [head(e)])
    assert ("edit", 5) in {(p.kind, p.n) for p in rep.problems}


def _store(db: FleetDB, dev: str, seq: int, state: str, extra: dict) -> None:
    with db.transaction() as tx:
        tx.touch_device(dev, 1000.0 + seq)
        tx.status(dev, Status(seq=seq, state=state, t=1_700_000_000 + seq, extra=extra), 1000.0 + seq)


def test_cli_verify_passes_then_names_the_gap(tmp_path):
    e = make_log(tmp_path)
    db = FleetDB(tmp_path / "w" / "fleet.db")
    for i, entry in enumerate(e):
        if i != 2:
            _store(db, "pump-1", 10 + i, "event", {"e": entry})
    n, h = head(e)
    _store(db, "pump-1", 20, "posture", {"ev": [n, h], "integrity": {"ok": True}})
    _store(db, "pump-2", 5, "event", {"e": e[0]})
    db.close()
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path / "w"), "events", "verify", "pump-2"])
    assert r.exit_code == 0 and "chain verified" in r.output
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path / "w"), "events", "verify", "pump-1", "--json"])
    assert r.exit_code == 1
    rep = json.loads(r.output)
    assert [(p["kind"], p["n"]) for p in rep["problems"]] == [("gap", 3)]
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path / "w"), "events", "verify", "nobody"])
    assert r.exit_code == 1 and "unknown device" in r.output and "Traceback" not in r.output
    db = FleetDB(tmp_path / "w" / "fleet.db")
    assert security_db.counts(db) == {"posture_reports": 1, "events": 5}
