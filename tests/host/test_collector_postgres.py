"""Issue 15: the same collector code on PostgreSQL 15 (real server) and SQLite.

One PostgreSQL server per module (initdb ~2 s). Each test gets a fresh database.
"""
from __future__ import annotations

import threading
import time
import uuid

import cbor2
import psycopg
import pytest

from host_tools.collector import FleetDB, Ingestor
from host_tools.collector.db import OLD_STORE_LOCK, SCHEMA_VERSION
from host_tools.collector.cose import seal
from host_tools.collector.dbconn import DatabaseURLError, PgConnection, parse_url
from host_tools.collector.pg_local import LocalPostgres
from host_tools.collector.security_db import events, postures
from host_tools.pki import FleetPKI


@pytest.fixture(scope="module")
def pg():
    server = LocalPostgres().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = FleetPKI(tmp_path_factory.mktemp("pki"))
    p.init()
    for dev in ("pump-a", "pump-b"):
        p.issue(dev, "pump-v2")
    return p


def fresh_pg_url(pg: LocalPostgres) -> str:
    name = "t" + uuid.uuid4().hex[:10]
    with psycopg.connect(pg.url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return pg.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path, pg):
    return f"sqlite:///{tmp_path}/fleet.db" if request.param == "sqlite" else fresh_pg_url(pg)


def topic(dev: str) -> str:
    return f"medsentry/{dev}/telemetry"


def msg(pki: FleetPKI, dev: str, seq: int) -> bytes:
    tk = pki.device(dev).active_key()
    rec = {"t": 1764489600 + seq, "seq": seq, "hr": 60 + seq % 30, "spo2": 97}
    return seal(cbor2.dumps(rec), key=tk.key, base_iv=tk.base_iv, kid=tk.kid, seq=seq, topic=topic(dev))


def run_pair(work) -> list[BaseException]:
    """work(0) and work(1) in two threads at once (two collectors); their errors."""
    errors: list[BaseException] = []

    def guarded(k: int) -> None:
        try:
            work(k)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def test_same_outcomes_on_both_databases(pki, db_url):
    db = FleetDB(db_url)
    ing = Ingestor(pki, db)
    kinds = [ing.handle(topic("pump-a"), msg(pki, "pump-a", s)).kind for s in (1, 2, 5, 3, 3, 4)]
    assert kinds == ["accepted", "accepted", "accepted", "accepted", "duplicate", "accepted"]
    bad = bytearray(msg(pki, "pump-a", 6))
    bad[-1] ^= 1
    assert ing.handle(topic("pump-a"), bytes(bad)).kind == "forged"
    assert db.seqs("pump-a") == [1, 2, 3, 4, 5]
    assert db.missing("pump-a") == [] and db.lost() == 0
    assert [g["kind"] for g in db.gap_log("pump-a")] == ["gap", "filled", "filled"]
    assert db.vitals("pump-a")[0]["hr"] == 61
    assert db.counters("pump-a")["forged"] == 1 and len(db.rejections()) == 1
    db.close()
    # a second process opening the same database sees the same state
    db2 = FleetDB(db_url)
    assert Ingestor(pki, db2).handle(topic("pump-a"), msg(pki, "pump-a", 5)).kind == "duplicate"
    db2.close()


def test_migrations_bring_an_old_database_forward(pg):
    url = fresh_pg_url(pg)
    db = FleetDB(url)
    db.conn.execute("DROP INDEX vitals_received")
    db.conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    db.close()
    db = FleetDB(url)  # applies migration 2 (and the later ones) again
    row = db.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    assert int(row[0]) == SCHEMA_VERSION
    assert db.conn.execute("SELECT 1 FROM pg_indexes WHERE indexname='vitals_received'").fetchone()
    db.conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.close()
    with pytest.raises(RuntimeError, match="schema version 99"):
        FleetDB(url)


def test_competing_batches_store_each_record_once(pki, db_url):
    """Two collectors (two connections, two Ingestors) get overlapping, interleaved
    batches of the same device, including redeliveries: each number stored once,
    no loss, no hole left."""
    dbs = [FleetDB(db_url), FleetDB(db_url)]
    ings = [Ingestor(pki, d) for d in dbs]
    n = 400
    stream = [(topic(dev), msg(pki, dev, s)) for s in range(1, n + 1) for dev in ("pump-a", "pump-b")]

    def worker(k: int) -> None:
        # each collector gets every other batch, plus a redelivery of the other's
        for i in range(0, len(stream), 16):
            batch = stream[i:i + 16]
            if (i // 16) % 2 == k or i % 48 == 0:
                ings[k].handle_batch(batch)

    assert not run_pair(worker)
    for dev in ("pump-a", "pump-b"):
        assert dbs[0].seqs(dev) == list(range(1, n + 1))
        assert dbs[0].missing(dev) == []
    assert dbs[0].lost() == 0
    accepted = sum(i.stats.get("accepted", 0) for i in ings)
    assert accepted == 2 * n
    for d in dbs:
        d.close()


def test_batches_of_different_devices_store_in_parallel(pki, pg):
    """The store lock is per device (partitioned collectors scale out): while one
    collector's batch of pump-a is open, another's batch of pump-b takes its lock
    at once; a batch that also holds pump-a waits for the first one's commit.
    (With one lock for the whole store, the pump-b batch waited too.)"""
    url = fresh_pg_url(pg)
    a, b = FleetDB(url), FleetDB(url)
    try:
        a.begin_batch()
        a.lock_store(["pump-a"])
        took: dict[str, float] = {}

        def lock(devices: list[str]) -> None:
            t0 = time.monotonic()
            b.begin_batch()
            b.lock_store(devices)
            took[",".join(devices)] = time.monotonic() - t0
            b.commit_batch()

        t = threading.Thread(target=lock, args=(["pump-b"],))
        t.start()
        t.join(5)
        assert "pump-b" in took and took["pump-b"] < 2, took
        t = threading.Thread(target=lock, args=(["pump-b", "pump-a"],))
        t.start()
        t.join(1.5)
        assert t.is_alive(), "a batch holding pump-a did not wait for the open one"
        a.commit_batch()
        t.join(5)
        assert "pump-b,pump-a" in took
    finally:
        a.rollback_batch()
        a.close()
        b.close()


def test_a_collector_of_the_previous_version_and_this_one_exclude_each_other(pg):
    """Rolling upgrade: the previous collector locked the whole store with an
    exclusive advisory lock per batch; this one's batch waits for it (it holds
    that lock shared, so two of this version still store in parallel: the test
    above)."""
    url = fresh_pg_url(pg)
    new_a = FleetDB(url)
    old = psycopg.connect(url, autocommit=False)
    try:
        old.execute("SELECT pg_advisory_xact_lock(%s)", (OLD_STORE_LOCK,))
        done = threading.Event()

        def store() -> None:
            new_a.begin_batch()
            new_a.lock_store(["pump-a"])
            done.set()
            new_a.commit_batch()

        t = threading.Thread(target=store)
        t.start()
        assert not done.wait(1.5), "stored while the previous version's batch held the store"
        old.commit()
        assert done.wait(5)
        t.join(5)
    finally:
        old.close()
        new_a.close()


def test_competing_batches_with_shared_and_foreign_rows_never_deadlock(pki, pg):
    """Batches of overlapping device sets, in different orders, with messages
    counted under the unknown device ("?": rows every collector touches): no
    deadlock error, every record stored once and every bad message counted."""
    devs = [f"part-{i}" for i in range(6)]
    for d in devs:
        if d not in {r.device_id for r in pki.devices()}:
            pki.issue(d, "pump-v2")
    url = fresh_pg_url(pg)
    dbs = [FleetDB(url), FleetDB(url)]
    ings = [Ingestor(pki, d) for d in dbs]
    n = 60

    def worker(k: int) -> None:
        order = devs if k == 0 else devs[::-1]
        for s in range(1, n + 1, 4):
            batch = [(topic(d), msg(pki, d, q)) for q in range(s, s + 4) for d in order]
            batch.append(("medsentry/x/other", b"junk"))
            batch.append((f"medsentry/{order[0]}/telemetry", b"\xd0junk"))
            ings[k].handle_batch(batch)

    errors = run_pair(worker)
    assert not errors, errors
    for d in devs:
        assert dbs[0].seqs(d) == list(range(1, n + 1)), d
        assert dbs[0].missing(d) == []
    c = dbs[0].counters()
    assert c.get("ignored", 0) == 2 * (n // 4) and c.get("malformed", 0) == 2 * (n // 4), c
    for d in dbs:
        d.close()


def status_msg(pki: FleetPKI, dev: str, seq: int) -> bytes:
    tk = pki.device(dev).active_key()
    t = f"medsentry/{dev}/status"
    rec = {"t": 1764489600 + seq, "seq": seq, "state": "online", "fw": "1.0.0"}
    return seal(cbor2.dumps(rec), key=tk.key, base_iv=tk.base_iv, kid=tk.kid, seq=seq, topic=t)


def test_a_batch_stores_what_one_by_one_stores(pki, db_url, tmp_path):
    """handle_batch sums a batch's counter increments and device-row refreshes into one
    write each before COMMIT: the device rows and counters must be exactly those of
    the same messages handled one at a time (new devices, status between telemetry,
    a gap, a duplicate, a forgery)."""
    stream = [(topic("pump-a"), msg(pki, "pump-a", 1)), ("medsentry/pump-a/status", status_msg(pki, "pump-a", 2)),
              (topic("pump-b"), msg(pki, "pump-b", 1)), (topic("pump-a"), msg(pki, "pump-a", 3)),
              (topic("pump-a"), msg(pki, "pump-a", 6)), (topic("pump-a"), msg(pki, "pump-a", 3)),
              (topic("pump-b"), msg(pki, "pump-b", 2)), (topic("pump-a"), msg(pki, "pump-a", 4))]
    bad = bytearray(msg(pki, "pump-b", 3))
    bad[-1] ^= 1
    stream.append((topic("pump-b"), bytes(bad)))
    one = FleetDB(tmp_path / "one-by-one.db")
    ing_one = Ingestor(pki, one)
    for t, m in stream:
        ing_one.handle(t, m, now=1000.0)
    batched = FleetDB(db_url)
    ing_b = Ingestor(pki, batched)
    ing_b.handle_batch(stream[:5], now=1000.0)
    ing_b.handle_batch(stream[5:], now=1001.0)
    for dev in ("pump-a", "pump-b"):
        a, b = one.device(dev), batched.device(dev)
        for col in ("highest_seq", "records", "status", "fw", "first_seen"):
            assert a[col] == b[col], (dev, col)
        assert b["last_seen"] == 1001.0  # both have a record in the second batch
        assert one.counters(dev) == batched.counters(dev), dev
        assert one.seqs(dev) == batched.seqs(dev) and one.missing(dev) == batched.missing(dev)
    assert batched.device("pump-a")["records"] == 5 and batched.device("pump-a")["highest_seq"] == 6
    assert batched.counters("pump-a")["accepted"] == 5 and batched.counters("pump-a")["duplicate"] == 1
    # a batch that fails is rolled back whole: no summed write survives it
    before = (batched.device("pump-b"), batched.counters("pump-b"))
    boom = [(topic("pump-b"), msg(pki, "pump-b", 4)), (topic("pump-b"), msg(pki, "pump-b", 5))]
    real = batched.commit_batch

    def fail() -> None:
        batched._flush_sums()
        raise RuntimeError("database went away at COMMIT")
    batched.commit_batch = fail  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        ing_b.handle_batch(boom, now=1002.0)
    batched.commit_batch = real  # type: ignore[method-assign]
    assert (batched.device("pump-b"), batched.counters("pump-b")) == before
    one.close()
    batched.close()


def test_a_large_batch_stores_every_row(pki, db_url):
    """A batch larger than SQLITE_ROWS_PER_INSERT (multi-row INSERTs plus the rest
    one by one on SQLite, COPY on PostgreSQL) stores every record once, with its
    values, and a duplicate inside it is still seen."""
    db = FleetDB(db_url)
    ing = Ingestor(pki, db)
    batch = [(topic(dev), msg(pki, dev, s)) for s in range(1, 76) for dev in ("pump-a", "pump-b")]
    outs = ing.handle_batch(batch + [batch[-1]], now=1000.0)
    assert [o.kind for o in outs] == ["accepted"] * 150 + ["duplicate"]
    for dev in ("pump-a", "pump-b"):
        assert db.seqs(dev) == list(range(1, 76))
        assert [v["hr"] for v in db.vitals(dev)] == [60 + s % 30 for s in range(1, 76)]
    db.close()


def test_writes_outside_a_batch_are_sent_at_once(pg):
    """PgConnection queues writes only inside ``deferred_writes``: after an
    executemany outside it, a write still goes to the server at once (one did not,
    until the next read, when flushing turned queueing on for good)."""
    url = fresh_pg_url(pg)
    conn = PgConnection(url)
    conn.execute("CREATE TABLE t (x BIGINT)")
    conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
    conn.execute("INSERT INTO t VALUES (?)", (3,))
    with psycopg.connect(url, autocommit=True) as other:
        assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 3
    conn.close()


def test_postgres_restart_under_the_collector(pki, pg):
    url = fresh_pg_url(pg)
    db = FleetDB(url)
    ing = Ingestor(pki, db)
    ing.handle_batch([(topic("pump-a"), msg(pki, "pump-a", s)) for s in (1, 2)])
    pg.restart()
    with pytest.raises(psycopg.Error):
        ing.handle_batch([(topic("pump-a"), msg(pki, "pump-a", 3))])
    db.reopen()
    outs = ing.handle_batch([(topic("pump-a"), msg(pki, "pump-a", s)) for s in (2, 3, 4)])
    assert [o.kind for o in outs] == ["duplicate", "accepted", "accepted"]
    assert db.seqs("pump-a") == [1, 2, 3, 4] and db.lost() == 0
    db.close()


def test_database_urls():
    assert parse_url("sqlite:///tmp/x.db") == ("sqlite", "/tmp/x.db")
    assert parse_url("fleet.db") == ("sqlite", "fleet.db")
    assert parse_url("postgresql://u@h:1/d")[0] == "postgresql"
    with pytest.raises(DatabaseURLError):
        parse_url("mysql://x")


def test_broker_shed_reports_count_once_in_any_order(db_url):
    """The cluster nodes' shed reports (rabbit_plugin.py) reach competing collectors at
    least once and not always in order: each node's running total is counted once as
    the client's flood_shed, however often and late a report comes; a node that
    booted again starts its total from zero."""
    db = FleetDB(db_url)
    n1, n2 = "rabbit@a", "rabbit@b"
    assert db.apply_broker_shed(n1, 100, "pump-a", 40) == 40
    assert db.apply_broker_shed(n1, 100, "pump-a", 40) == 0    # redelivered
    assert db.apply_broker_shed(n1, 100, "pump-a", 90) == 50
    assert db.apply_broker_shed(n1, 100, "pump-a", 40) == 0    # an older report, late
    assert db.apply_broker_shed(n2, 300, "pump-a", 7) == 7     # another node: its own total
    assert db.apply_broker_shed(n1, 200, "pump-a", 5) == 5     # node a booted again
    assert db.apply_broker_shed(n1, 100, "pump-a", 900) == 0   # a report from before that boot
    assert db.apply_broker_shed(n1, 200, "pump-b", 3) == 3     # per client
    assert db.counters("pump-a")["flood_shed"] == 102
    assert db.counters("pump-b")["flood_shed"] == 3
    db.close()


def sealed(pki: FleetPKI, dev: str, kind: str, body: dict) -> tuple[str, bytes]:
    tk = pki.device(dev).active_key()
    t = f"medsentry/{dev}/{kind}"
    return t, seal(cbor2.dumps(body), key=tk.key, base_iv=tk.base_iv, kid=tk.kid, seq=body["seq"], topic=t)


def poisoned_stream(pki: FleetPKI) -> list[tuple[str, bytes]]:
    """pump-a's good records between pump-b's authentic records with values no store
    column holds: integers beyond 64 bits, a NUL in text (PostgreSQL refuses it), a
    posture report whose event-head counter overflows and an event entry whose kind
    has a NUL (report fields outside the record schema)."""
    t0 = 1764489600
    entry = cbor2.dumps([2 ** 70, 2 ** 70, "lo\x00gin", "hi\x00gh", {"why": "x\x00"}, b"p" * 32])
    return [
        (topic("pump-a"), msg(pki, "pump-a", 1)),
        sealed(pki, "pump-b", "telemetry", {"t": t0, "seq": 1, "hr": 2 ** 64}),
        (topic("pump-a"), msg(pki, "pump-a", 2)),
        sealed(pki, "pump-b", "telemetry", {"t": t0, "seq": 2, "pump": {"state": "run\x00ning"}}),
        sealed(pki, "pump-b", "telemetry", {"t": 2 ** 70, "seq": 3}),
        sealed(pki, "pump-b", "status", {"t": t0, "seq": 4, "state": "posture", "ev": [2 ** 70, b"h" * 32]}),
        sealed(pki, "pump-b", "status", {"t": t0, "seq": 5, "state": "event", "e": entry}),
        sealed(pki, "pump-b", "status", {"t": t0, "seq": 6, "state": "command",
                                         "command": {"result": "re\x00fused", "ctr": 2 ** 64}}),
        (topic("pump-a"), msg(pki, "pump-a", 3)),
        sealed(pki, "pump-b", "telemetry", {"t": t0, "seq": 7, "hr": 61}),
    ]


def store_both_ways(ing: Ingestor, db: FleetDB, stream: list[tuple[str, bytes]], way: str) -> list[str]:
    """The AMQP collector's path (``handle_batch``) or the Mosquitto collector's
    (``handle``, one message at a time inside its batch) -> outcome kinds."""
    if way == "batch":
        return [o.kind for o in ing.handle_batch(stream, now=1000.0)]
    db.begin_batch()
    kinds = [ing.handle(t, m, now=1000.0).kind for t, m in stream]
    db.commit_batch()
    return kinds


@pytest.mark.parametrize("way", ["batch", "one by one"])
def test_one_devices_unstorable_records_never_stall_the_others(pki, db_url, way):
    """Attack (a holder of one device's key): authentic records with values the
    database cannot hold. Before, the whole batch failed to store and was requeued,
    again and again (AMQP collector), or the collector stopped and its spool retried
    the record at every start (Mosquitto collector): every device's telemetry behind
    it was stalled. Schema fields out of range make the record malformed; report
    fields the schema does not check are stored as NULL (integers) or with the NUL
    written out (text), as an ill-typed one is."""
    db = FleetDB(db_url)
    ing = Ingestor(pki, db)
    assert store_both_ways(ing, db, poisoned_stream(pki), way) == (
        ["accepted", "malformed", "accepted", "malformed", "malformed"] + ["accepted"] * 5)
    assert db.seqs("pump-a") == [1, 2, 3] and db.seqs("pump-b") == [7]  # telemetry
    assert db.device("pump-b")["highest_seq"] == 7 and db.counters("pump-b")["accepted"] == 4
    assert db.counters("pump-b")["malformed"] == 3 and db.missing("pump-b") == [(1, 3)]
    (posture,) = postures(db, "pump-b")
    (event,) = events(db, "pump-b")
    assert posture["head_n"] is None and (event["n"], event["t"], event["kind"]) == (None, None, "lo\\0gin")
    assert tuple(db.conn.execute("SELECT ctr, result FROM command_results").fetchone()) == (None, "re\\0fused")
    # and the stream goes on; a topic with a NUL (no device, stored in the rejection log) too
# and the stream goes on; a topic with a NUL (no device, stored in the rejection log) too
    outs = ing.handle_batch([(topic("pump-a"), msg(pki, "pump-a", 4)), ("medsentry\x00/x", b"?")], now=1001.0)
    assert [o.kind for o in outs] == ["accepted", "ignored"]
    db.close()


@pytest.mark.parametrize("way", ["batch", "one by one"])
def test_a_value_the_database_refuses_is_refused_alone(pki, db_url, way, monkeypatch):
    """The backstop behind those checks, for a value some future sink forgets to
    check (injected here: pump-b's record 2 is written with a 65-bit heart rate):
    the database's refusal is a data error, not a failing database, so the batch is
    stored in halves until that one message is refused; nothing else is lost."""
    from host_tools.collector import db as dbmod

    real = dbmod._vitals_row

    def unchecked(device_id, rec, now, extra):
        if device_id == "pump-b" and rec.seq == 2:
            rec.hr = 2 ** 64
        return real(device_id, rec, now, extra)
    monkeypatch.setattr(dbmod, "_vitals_row", unchecked)
    db = FleetDB(db_url)
    ing = Ingestor(pki, db)
    stream = [(topic(dev), msg(pki, dev, s)) for s in range(1, 5) for dev in ("pump-a", "pump-b")]
    kinds = store_both_ways(ing, db, stream, way)
    assert kinds == ["accepted"] * 3 + ["malformed"] + ["accepted"] * 4
    assert db.seqs("pump-a") == [1, 2, 3, 4] and db.seqs("pump-b") == [1, 3, 4]
    (refusal,) = db.rejections("pump-b")
    assert refusal["detail"].startswith("authentic but cannot be stored") and ing.stats["malformed"] == 1
    db.close()
