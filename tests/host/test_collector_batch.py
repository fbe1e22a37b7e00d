"""Whole batches in the collector (Ingestor.handle_batch): the key ring checked once
per batch (a key issued, rotated or retired before a batch is read is in force for
every message of it, exactly as with one stat() per message), and SQLite's deferred
per-record inserts (a redelivery inside the batch is still a duplicate; a batch that
fails stores nothing). Real Ingestor, SQLite, AES-CCM."""
from __future__ import annotations

import cbor2
import pytest

from host_tools.collector import FleetDB, Ingestor
from host_tools.collector.cose import seal
from host_tools.pki import FleetPKI

TOPIC = "medsentry/pump-k/telemetry"


def msg(tk, seq: int) -> tuple[str, bytes]:
    rec = {"t": 1764489600 + seq, "seq": seq, "hr": 70}
    return TOPIC, seal(cbor2.dumps(rec), key=tk.key, base_iv=tk.base_iv, kid=tk.kid, seq=seq, topic=TOPIC)


def test_rotation_and_retirement_hold_for_the_next_batch(tmp_path):
    pki = FleetPKI(tmp_path / "pki")
    pki.init()
    old = pki.issue("pump-k", "pump-v2").active_key()
    db = FleetDB(tmp_path / "fleet.db")
    ing = Ingestor(pki, db)
    try:
        assert [o.kind for o in ing.handle_batch([msg(old, 1), msg(old, 2)])] == ["accepted", "accepted"]
        new = pki.rotate_key("pump-k")  # not yet known to the ring: a miss looks again
        assert [o.kind for o in ing.handle_batch([msg(new, 3), msg(old, 4)])] == ["accepted", "accepted"]
        pki.retire_key("pump-k", old.kid.hex())  # a known key changed: one stat() per batch sees it
        assert [o.kind for o in ing.handle_batch([msg(old, 5), msg(new, 6)])] == ["retired_key", "accepted"]
        # and a device issued between batches
        other = pki.issue("pump-l", "pump-v2").active_key()
        t = "medsentry/pump-l/telemetry"
        p = seal(cbor2.dumps({"t": 1764489601, "seq": 1, "hr": 70}), key=other.key, base_iv=other.base_iv,
                 kid=other.kid, seq=1, topic=t)
        assert [o.kind for o in ing.handle_batch([(t, p)])] == ["accepted"]
    finally:
        db.close()


def test_deferred_inserts_keep_duplicates_and_all_or_nothing(tmp_path):
    pki = FleetPKI(tmp_path / "pki")
    pki.init()
    tk = pki.issue("pump-k", "pump-v2").active_key()
    db = FleetDB(tmp_path / "fleet.db")
    ing = Ingestor(pki, db)
    try:
        one = msg(tk, 1)
        assert [o.kind for o in ing.handle_batch([one, msg(tk, 2), one])] == ["accepted", "accepted", "duplicate"]
        assert db.seqs("pump-k") == [1, 2] and len(db.vitals("pump-k")) == 2
        # a batch whose storing fails half-way stores nothing of it
        calls = []

        def boom(*a, **k):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("disk gone")

        from host_tools.collector import db as dbmod

        orig = dbmod._Txn.gap_event
        dbmod._Txn.gap_event = lambda self, *a, **k: boom()
        try:
            with pytest.raises(RuntimeError):
                ing.handle_batch([msg(tk, 4), msg(tk, 6)])  # each opens a gap: the 2nd fails
        finally:
            dbmod._Txn.gap_event = orig
        assert db.seqs("pump-k") == [1, 2] and len(db.vitals("pump-k")) == 2
    finally:
        db.close()
