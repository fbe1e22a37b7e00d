"""Whole batches in the collector (Ingestor.handle_batch): the key ring checked once
per batch (a key issued, rotated or retired before a batch is read is in force for
every message of it, exactly as with one stat() per message), and SQLite's deferred
per-record inserts (a redelivery inside the batch is still a duplicate; a batch that
fails stores nothing). Real Ingestor, SQLite, AES-CCM."""
from __future__ import annotations

import cbor2
import pytest

from host_tools.collector import FleetDB, Ingestor
from host_tools.collector.amqp import BATCH_MAX, PREFETCH
from host_tools.collector.cose import seal
from host_tools.pki import FleetPKI

TOPIC = "medsentry/pump-k/telemetry"


def msg(tk, seq: int, topic: str = TOPIC) -> tuple[str, bytes]:
    rec = {"t": 1764489600 + seq, "seq": seq, "hr": 70}
    return topic, seal(cbor2.dumps(rec), key=tk.key, base_iv=tk.base_iv, kid=tk.kid, seq=seq, topic=topic)


@pytest.fixture
def store(tmp_path):
    """(PKI with pump-k issued, its fleet database, an Ingestor over both)."""
    pki = FleetPKI(tmp_path / "pki")
    pki.init()
    pki.issue("pump-k", "pump-v2")
    db = FleetDB(tmp_path / "fleet.db")
    yield pki, db, Ingestor(pki, db)
    db.close()


def test_rotation_and_retirement_hold_for_the_next_batch(store):
    pki, db, ing = store
    old = pki.device("pump-k").active_key()
    assert [o.kind for o in ing.handle_batch([msg(old, 1), msg(old, 2)])] == ["accepted", "accepted"]
    new = pki.rotate_key("pump-k")  # not yet known to the ring: a miss looks again
    assert [o.kind for o in ing.handle_batch([msg(new, 3), msg(old, 4)])] == ["accepted", "accepted"]
    pki.retire_key("pump-k", old.kid.hex())  # a known key changed: one stat() per batch sees it
    assert [o.kind for o in ing.handle_batch([msg(old, 5), msg(new, 6)])] == ["retired_key", "accepted"]
    # and a device issued between batches
    other = pki.issue("pump-l", "pump-v2").active_key()
    assert [o.kind for o in ing.handle_batch([msg(other, 1, "medsentry/pump-l/telemetry")])] == ["accepted"]


def test_deferred_inserts_keep_duplicates_and_all_or_nothing(store, monkeypatch):
    pki, db, ing = store
    tk = pki.device("pump-k").active_key()
    one = msg(tk, 1)
    assert [o.kind for o in ing.handle_batch([one, msg(tk, 2), one])] == ["accepted", "accepted", "duplicate"]
    assert db.seqs("pump-k") == [1, 2] and len(db.vitals("pump-k")) == 2
    # a batch whose storing fails half-way stores nothing of it
    from host_tools.collector import db as dbmod

    calls = []

    def gap_event(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk gone")

    monkeypatch.setattr(dbmod._Txn, "gap_event", gap_event)
    with pytest.raises(RuntimeError):
        ing.handle_batch([msg(tk, 4), msg(tk, 6)])  # each opens a gap: the 2nd fails
    assert db.seqs("pump-k") == [1, 2] and len(db.vitals("pump-k")) == 2


def test_a_redelivered_prefetch_window_counts_as_duplicates_not_replays(store):
    """The AMQP collector may hold a whole prefetch window of one partition, so of
    one device, stored but not yet acknowledged; after a collector or broker fault
    the broker delivers it again. Those copies must count as duplicates (dropped
    silently), not as replays (a security alert on the device)."""
    pki, db, ing = store
    tk = pki.device("pump-k").active_key()
    window = [msg(tk, s) for s in range(1, PREFETCH + 1)]
    for i in range(0, len(window), BATCH_MAX):
        ing.handle_batch(window[i:i + BATCH_MAX])
    again = ing.handle_batch(window[:BATCH_MAX] + window[-BATCH_MAX:])
    assert {o.kind for o in again} == {"duplicate"}
    assert ing.handle_batch([msg(tk, PREFETCH + 1)])[0].kind == "accepted"
