"""Whole batches in the collector (Ingestor.handle_batch): the key ring checked once
per batch (a key issued, rotated or retired before a batch is read is in force for
every message of it, exactly as with one stat() per message), and SQLite's deferred
per-record inserts (a redelivery inside the batch is still a duplicate; a batch that
fails stores nothing); batches planned ahead of storing (the AMQP collector's
receiving thread plans, its storer stores) store as if planned in turn. Real
Ingestor, SQLite, AES-CCM."""
from __future__ import annotations

import time

import cbor2
import pytest

from host_tools.collector import FleetDB, Ingestor
from host_tools.collector.amqp import (BATCH_MAX, PLAN_AHEAD, PREFETCH, RECEIVE_PAUSE, STORE_BEHIND,
                                       AmqpCollector)
from host_tools.collector.cose import seal
from host_tools.pki import FleetPKI

TOPIC = "medsentry/pump-k/telemetry"


def msg(tk, seq: int, topic: str = TOPIC, hr: int = 70) -> tuple[str, bytes]:
    rec = {"t": 1764489600 + seq, "seq": seq, "hr": hr}
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


def test_batches_planned_ahead_store_as_if_planned_in_turn(store):
    """The next batch is verified and decrypted while the one before is stored: its
    sequence logic still runs when it is stored, against what the batch before stored."""
    pki, db, ing = store
    tk = pki.device("pump-k").active_key()
    first = ing.plan_batch([msg(tk, 1), msg(tk, 2)])
    second = ing.plan_batch([msg(tk, 2), msg(tk, 3), msg(tk, 1)])  # redeliveries, planned before 1-2 are stored
    third = ing.plan_batch([msg(tk, 5)])
    assert [o.kind for o in ing.store_planned(first)] == ["accepted", "accepted"]
    assert [o.kind for o in ing.store_planned(second)] == ["duplicate", "accepted", "duplicate"]
    assert [o.kind for o in ing.store_planned(third)] == ["accepted"]
    assert db.seqs("pump-k") == [1, 2, 3, 5] and db.missing("pump-k") == [(4, 4)]


def test_the_receiving_thread_plans_a_bounded_backlog_and_leaves_its_failures_to_the_storer(store, monkeypatch):
    """AmqpCollector's hand-over (no broker needed): a planned batch is stored; while
    the storer has PLAN_AHEAD batches waiting, batches go over unplanned (a database
    that is down keeps no more decrypted records in memory) and the storer plans
    them; a planning failure in the receiving thread (which would end its connection)
    is left to the storer, which nacks the batch and says why."""
    pki, db, ing = store
    col = AmqpCollector(pki, db, "collector", [("127.0.0.1", 1)])
    tk = pki.device("pump-k").active_key()

    def delivery(tag: int, seq: int) -> tuple[int, str, bytes]:
        return (tag, *msg(tk, seq))

    batch = [delivery(1, 1), delivery(2, 2)]
    planned = col._plan(batch, 1000.0)
    assert planned is not None and col._store(batch, 1000.0, planned) is True
    for _ in range(PLAN_AHEAD):
        col._work.put(None)
    behind = [delivery(3, 3)]
    assert col._plan(behind, 1001.0) is None
    assert col._store(behind, 1001.0, None) is True
    while not col._work.empty():
        col._work.get()

    def unreadable(*_a, **_k):
        raise OSError("device record unreadable")

    monkeypatch.setattr(col.ingestor, "plan_batch", unreadable)
    failing = [delivery(4, 4)]
    assert col._plan(failing, 1002.0) is None
    assert col._store(failing, 1002.0, None) is False
    assert "OSError" in col.errors[-1]
    assert db.seqs("pump-k") == [1, 2, 3]
    # the batch the storer planned itself carries its hand-over time, like the others
    assert [v["received_at"] for v in db.vitals("pump-k")] == [1000.0, 1000.0, 1001.0]


def test_the_receiving_thread_pauses_only_while_the_storer_is_behind(store):
    """AmqpCollector's hand-over (no broker needed): with more than STORE_BEHIND
    batches waiting for the storer, the receiving thread leaves it the interpreter
    lock for RECEIVE_PAUSE; with STORE_BEHIND or fewer it goes straight on (the
    hand-over of every batch calls this)."""
    pki, db, _ = store
    col = AmqpCollector(pki, db, "collector", [("127.0.0.1", 1)])
    for _ in range(STORE_BEHIND):
        col._work.put(None)
    t0 = time.monotonic()
    assert col._pause_if_storer_behind() is False
    col._work.put(None)
    assert col._pause_if_storer_behind() is True
    assert time.monotonic() - t0 >= RECEIVE_PAUSE


def test_a_record_cannot_refer_to_a_value_of_the_record_before(store):
    """Each thread decodes every plaintext with one CBOR decoder (records._decode_map).
    Attack: one device marks a value of its record shareable (tag 28), another
    device's next record refers to it (tag 29) or to a string of its namespace
    (tag 25). Each plaintext must decode on its own: the references are refused."""
    pki, db, ing = store
    other = pki.issue("pump-l", "pump-v2").active_key()
    tk = pki.device("pump-k").active_key()
    other_topic = "medsentry/pump-l/telemetry"

    def sealed(key, seq, topic, rec):
        return topic, seal(cbor2.dumps(rec), key=key.key, base_iv=key.base_iv, kid=key.kid, seq=seq, topic=topic)

    t = 1764489600
    outs = ing.handle_batch([
        sealed(tk, 1, TOPIC, {"t": t, "seq": 1, "hr": cbor2.CBORTag(28, 70),
                              "note": cbor2.CBORTag(256, ["secret", cbor2.CBORTag(25, 0)])}),
        sealed(other, 1, other_topic, {"t": t, "seq": 1, "hr": cbor2.CBORTag(29, 0)}),
        sealed(other, 2, other_topic, {"t": t, "seq": 2, "note": cbor2.CBORTag(25, 0)}),
    ])
    assert [o.kind for o in outs] == ["accepted", "malformed", "malformed"]
    assert "shared reference" in db.rejections("pump-l")[0]["detail"]
    assert "string reference" in db.rejections("pump-l")[1]["detail"]


def test_interleaved_devices_in_one_batch_store_every_row_as_sent(store):
    """SQLite inserts a batch's rows in key order, not in arrival order: every row
    still holds its own record's values, and the batch's outcomes stay in arrival order."""
    pki, db, ing = store
    keys = {"pump-k": pki.device("pump-k").active_key(), "pump-a": pki.issue("pump-a", "pump-v2").active_key()}

    def rec(dev: str, seq: int) -> tuple[str, bytes]:
        return msg(keys[dev], seq, f"medsentry/{dev}/telemetry", hr=(40 if dev == "pump-a" else 90) + seq)

    batch = [rec(dev, s) for s in (1, 2, 3) for dev in ("pump-k", "pump-a")] + [rec("pump-k", 5), rec("pump-k", 4)]
    outs = ing.handle_batch(batch)
    assert [(o.device_id, o.seq) for o in outs] == [("pump-k", 1), ("pump-a", 1), ("pump-k", 2), ("pump-a", 2),
                                                    ("pump-k", 3), ("pump-a", 3), ("pump-k", 5), ("pump-k", 4)]
    assert {o.kind for o in outs} == {"accepted"}
    assert [(v["seq"], v["hr"], v["t"]) for v in db.vitals("pump-k")] == [(s, 90 + s, 1764489600 + s)
                                                                         for s in (1, 2, 3, 4, 5)]
    assert [(v["seq"], v["hr"]) for v in db.vitals("pump-a")] == [(1, 41), (2, 42), (3, 43)]
    assert db.missing("pump-k") == [] and db.counters("pump-a")["accepted"] == 3


def test_the_retain_flag_reaches_the_batch_path_as_it_reaches_handle(store):
    """The Mosquitto collector stores its spool in batches: a retained last will (which
    the broker re-sends on every subscription, maybe older than the device's sealed
    status) is still not believed for a device whose status is known."""
    from host_tools.collector.records import UNSEALED_OFFLINE

    pki, db, ing = store
    tk = pki.device("pump-k").active_key()
    s_topic = "medsentry/pump-k/status"
    sealed = seal(cbor2.dumps({"t": 1764489601, "seq": 1, "state": "online", "fw": "1.0.0"}),
                  key=tk.key, base_iv=tk.base_iv, kid=tk.kid, seq=1, topic=s_topic)
    will = (s_topic, UNSEALED_OFFLINE)
    outs = ing.handle_batch([(s_topic, sealed), will, will], retained=[False, True, False])
    assert [o.kind for o in outs] == ["accepted", "ignored", "status_unsealed"]
    assert outs[1].detail == "stale retained last will"
    with pytest.raises(ValueError):
        ing.plan_batch([will], retained=[True, False])
