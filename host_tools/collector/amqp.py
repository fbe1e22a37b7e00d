"""A competing collector on the fleet broker cluster (RabbitMQ): AMQP 0-9-1 over mutual TLS.

The device stream is split into ``PARTITIONS`` durable quorum queues
``medsentry.collector.<k>`` (rabbit_config.py: a consistent-hash exchange on the
publishing device, so all of a device's records land in one partition, in the
order it sent them). Each queue has a single active consumer: every collector process
consumes every partition, its *home* partitions (``shard`` = (i, n): k % n == i)
at once and the others ``standby_s`` later, so collectors started together split
the partitions between them and each takes over a dead one's (the broker makes
the next consumer in line active). Every ``rebalance_s`` a collector re-registers its
consumers of the partitions that are not its home: a restarted collector waiting
for its home partitions gets them back. Each process verifies and decrypts its messages
on its own, then stores a batch in one transaction (``Ingestor.handle_batch``: the
batch's devices locked, their sequence state read fresh) and only then
acknowledges it (``multiple``). Two collectors store in parallel as long as their
batches share no device; one that does waits for the other's commit.

The partitions also carry the nodes' reports of what their per-client publish
limit dropped (``medsentry/broker/shed``): counted once as the client's
``flood_shed`` (FleetDB.apply_broker_shed), in their own transaction.

Whatever dies — this process, its broker node, the database — unacknowledged
messages are redelivered (to this or another collector) and recognised as
duplicates when they were stored already: each sealed record is stored once.

Login is SASL EXTERNAL: the certificate CN is the user (no password exists).

Threads (pika's BlockingConnection is not thread-safe; its FAQ and
``add_callback_threadsafe``): the calling thread owns the connection and only
runs its I/O loop, so heartbeats, deliveries and acks never wait for the
database. When it hands a batch over it verifies and decrypts it too
(``Ingestor.plan_batch``: no database, no store lock), so that work overlaps the
storer's wait for the previous batch's COMMIT. One storer thread stores the planned
batches in order (``Ingestor.store_planned``) and hands each ack (or nack) back to
the I/O thread with ``add_callback_threadsafe``. While the storer has more than
``STORE_BEHIND`` batches waiting, the I/O thread pauses ``RECEIVE_PAUSE`` after each
hand-over: the storer then bounds the drain, and needs the interpreter lock more
than more deliveries do. Before, the one thread stored while
holding the loop, so nothing was read or sent while a batch waited for the store
lock; then the storer planned too, and the COMMIT wait overlapped nothing but
receiving. (A third thread that planned was measured slower: more switches of the
interpreter lock; bench/fleet_sizing_rounds.md, round 8.)

Stall guard: a consumer that holds nothing unsettled, has had no delivery for
``stall_s`` and still sees ready messages in a partition it was served from on
this connection (passive declare; once active, a single active consumer stays
active until it leaves) is not being served by the broker: the prefetch window
is used up on the broker's side (a settlement the broker never applied). It
reconnects, which returns those deliveries to the queue; the copies already
stored come back as duplicates. A partition where it is only standing by is not
probed: its ready messages are another collector's.
"""
from __future__ import annotations

import functools
import gc
import queue
import ssl
import sys
import threading
import time
from typing import Any

from host_tools.broker.rabbit_config import COLLECTOR_QUEUES
from host_tools.pki import FleetPKI, Identity

from . import shed_report
from .db import FleetDB
from .ingest import Ingestor, PlannedBatch

#: Records per transaction, and deliveries a partition may have unacknowledged. In
#: bench_fleet (64,000 records, two A/B rounds) 1,024 / 4,096 stored 20% more
#: records/s on PostgreSQL and 12% more on SQLite than 512 / 1,024: a COMMIT waits
#: ~5 ms for the WAL to reach the disk, and with the larger window the broker keeps
#: sending meanwhile, so the receiving thread has work while the storer waits.
#: (A redelivered window must still count as duplicates: ingest.DUPLICATE_WINDOW.)
BATCH_MAX = 1024
BATCH_DELAY = 0.02
PREFETCH = 4096
STALL_S = 30.0
STANDBY_S = 2.0
REBALANCE_S = 30.0
_SWAP = str.maketrans("./", "/.")
#: Allocations between young-generation collections in a collector process (Python's
#: default is 700): a batch keeps ~50 objects per record alive until it is stored, so
#: with the default they were scanned and promoted before they died.
GC_GEN0 = 50_000
#: The interpreter's switch interval in a collector process (Python's default is
#: 5 ms): how long a thread that wants the interpreter lock waits before it asks the
#: holder to let go. The receiving thread comes back from every socket read wanting
#: the lock while the storer holds it; with 5 ms it may wait that long each time,
#: and the deliveries it would read and the acks it would send wait with it. In
#: bench_fleet's collector drain, two runs of four A/B rounds in one cluster:
#: PostgreSQL 22,400-23,600 records/s against 17,500-20,900 (steady rates) and
#: 29,900-31,900 against 26,400-28,300 (from the first message); SQLite no change
#: (18,800-21,100 against 18,900-21,200; 22,200-29,900 against 26,300-28,700).
#: 0.2 ms did no better and cost 1-2 us more CPU per record
#: (bench/fleet_sizing_rounds.md, round 13).
SWITCH_INTERVAL = 0.0005
#: Planned batches the storer may have waiting (their plaintexts and records held in
#: memory); behind that the receiving thread hands batches over unplanned and the
#: storer plans them itself (a database that is down keeps nothing more in memory).
PLAN_AHEAD = 8
#: When the storer has more than STORE_BEHIND batches waiting, the receiving thread
#: pauses RECEIVE_PAUSE s after handing it another. Draining full partitions, the
#: storer is the stage that bounds the drain, and it waited for the interpreter lock
#: while the receiving thread held it to read deliveries that could not be stored any
#: sooner. Interleaved A/B rounds in one cluster (bench/fleet_sizing_rounds.md,
#: round 14): SQLite +4% to +37% in every one of 9 rounds (medians +16% and +23% in
#: two runs), PostgreSQL -13% to +30% (medians +2% and -7%: no change). A pause of
#: 10 ms, or one from 2 batches behind, did no better. The pause is far shorter
#: than the heartbeat (10 s); it may delay an ack by that much.
STORE_BEHIND = 4
RECEIVE_PAUSE = 0.004


def tune_process() -> None:
    """Interpreter settings for a process whose work is collecting.

    Garbage collection: what exists after start-up (modules, the key ring) is moved
    out of the collector's way (``gc.freeze``) and young collections are rarer.
    Measured in the collector drain of bench_fleet (three A/B rounds, SQLite):
    23,700-25,100 records/s against 22,200-23,400 (bench/fleet_sizing_rounds.md,
    round 8). And the shorter switch interval (``SWITCH_INTERVAL``, round 13)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0, 20, 100)
    sys.setswitchinterval(SWITCH_INTERVAL)


@functools.lru_cache(maxsize=65536)
def routing_key_topic(routing_key: str) -> str:
    """amq.topic routing key -> MQTT topic (the MQTT plugin swaps ``.`` and ``/``).
    Cached (a few keys per device): 0.07 us per message against 0.8 for translate,
    in the thread that receives every message."""
    return routing_key.translate(_SWAP)


def amqp_parameters(identity: Identity, host: str, port: int) -> Any:
    import pika

    ctx = ssl.create_default_context(cafile=str(identity.ca))
    ctx.load_cert_chain(str(identity.cert), str(identity.key))
    return pika.ConnectionParameters(
        host=host, port=port, ssl_options=pika.SSLOptions(ctx, host),
        credentials=pika.credentials.ExternalCredentials(), heartbeat=10,
        connection_attempts=1, socket_timeout=5, blocked_connection_timeout=30)


#: A batch for the storer: connection, channel, deliveries (tag, topic, payload), the
#: time it was handed over, and its records planned or None.
_Work = tuple[Any, Any, list[tuple[int, str, bytes]], float, PlannedBatch | None]


def _records(batch: list[tuple[int, str, bytes]]) -> list[tuple[str, bytes]]:
    """A batch's device messages (topic, payload), without the nodes' shed reports."""
    return [(t, b) for _, t, b in batch if t != shed_report.TOPIC]


class _Stalled(Exception):
    """The broker sends nothing although the queue holds ready messages."""


class AmqpCollector:
    """``run()`` blocks until ``stop()``, ``duration`` or ``max_records`` accepted."""

    def __init__(self, pki: FleetPKI, db: FleetDB, identity: str, endpoints: list[tuple[str, int]],
                 *, batch_max: int = BATCH_MAX, batch_delay: float = BATCH_DELAY,
                 prefetch: int = PREFETCH, stall_s: float = STALL_S,
                 shard: tuple[int, int] = (0, 1), standby_s: float = STANDBY_S,
                 rebalance_s: float = REBALANCE_S) -> None:
        if not endpoints:
            raise ValueError("no AMQP endpoint")
        index, count = shard
        if not 0 <= index < count:
            raise ValueError(f"shard {index}/{count}: want 0 <= index < count")
        #: partitions consumed at once; the others after ``standby_s`` (as standby)
        self.home = [q for k, q in enumerate(COLLECTOR_QUEUES) if k % count == index]
        self.spare = [q for q in COLLECTOR_QUEUES if q not in self.home]
        self.standby_s = standby_s
        self.rebalance_s = rebalance_s
        #: registrations on the spare partitions (the first, then one per rebalance)
        self.handbacks = 0
        self.pki = pki
        self.db = db
        self.identity = pki.client_identity(identity)
        self.endpoints = list(endpoints)
        self.batch_max = batch_max
        self.batch_delay = batch_delay
        self.prefetch = prefetch
        self.stall_s = stall_s
        self.ingestor = Ingestor(pki, db)
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.reconnects = 0
        self.stalls = 0
        self.db_retries = 0
        #: flood_shed counted from the nodes' reports, per client (this process)
        self.shed: dict[str, int] = {}
        #: CPU seconds of each thread in its last run: ``receive`` (the connection's
        #: thread, which also plans) and ``store`` (bench_fleet.py prints them per
        #: record: which side of the interpreter lock a cut would relieve)
        self.thread_cpu: dict[str, float] = {"receive": 0.0, "store": 0.0}
        self._next = 0
        # deliveries received and not yet acked/nacked (I/O thread only)
        self._in_hand = 0
        self._last_settle = 0.0  # I/O thread: when the last ack/nack was sent
        # batches for the storer thread: at most `prefetch` deliveries per partition
        # served (the window is per consumer: quorum queues have no global QoS),
        # each with the time it was handed over (its records' received_at) and its
        # records planned (or None: the storer plans them)
        self._work: queue.Queue[_Work | None] = queue.Queue()

    @property
    def stats(self) -> dict[str, int]:
        return dict(self.ingestor.stats)

    def stop(self) -> None:
        self.stopping.set()

    def _connect(self, done: Any) -> Any:
        import pika

        while not done():
            host, port = self.endpoints[self._next % len(self.endpoints)]
            self._next += 1
            try:
                return pika.BlockingConnection(amqp_parameters(self.identity, host, port))
            except (pika.exceptions.AMQPError, OSError) as exc:
                self.errors.append(f"{host}:{port}: {type(exc).__name__}")
                time.sleep(0.5)
        return None

    # -- storer thread ---------------------------------------------------------
    def _storer(self) -> None:
        """Store batches in order; hand each settlement to the connection's thread."""
        import pika

        cpu = time.thread_time()
        try:
            while (item := self._work.get()) is not None:
                conn, ch, batch, now, planned = item
                ok = self._store(batch, now, planned)
                try:
                    conn.add_callback_threadsafe(functools.partial(self._settle, ch, batch[-1][0], len(batch), ok))
                except pika.exceptions.AMQPError:
                    pass  # that connection is gone: the broker redelivers the batch
        finally:
            self.thread_cpu["store"] = time.thread_time() - cpu

    def _plan(self, batch: list[tuple[int, str, bytes]], now: float) -> PlannedBatch | None:
        """The batch's records verified and decrypted, in the receiving thread; None
        when the storer has PLAN_AHEAD batches waiting, or when planning failed (the
        storer plans them again and meets the failure there, where it nacks)."""
        if self._work.qsize() >= PLAN_AHEAD:
            return None
        try:
            return self.ingestor.plan_batch(_records(batch), now)
        except Exception:  # noqa: BLE001 - e.g. an unreadable key record: the storer's to report
            return None

    def _pause_if_storer_behind(self) -> bool:
        """Leave the interpreter lock to the storer for RECEIVE_PAUSE when it has more
        than STORE_BEHIND batches waiting (receiving thread); True if it paused."""
        if self._work.qsize() <= STORE_BEHIND:
            return False
        time.sleep(RECEIVE_PAUSE)
        return True

    def _store(self, batch: list[tuple[int, str, bytes]], now: float, planned: PlannedBatch | None) -> bool:
        """Store the batch in one transaction; on a database failure reconnect to the
        database and report False (the batch is nacked and requeued). ``now`` is when
        it was handed over, also for a batch the storer plans itself: a device's
        records keep the order of their times whichever thread planned them."""
        try:
            for _, t, b in batch:
                if t == shed_report.TOPIC:
                    self._broker_shed(b)
            if planned is None:
                planned = self.ingestor.plan_batch(_records(batch), now)
            if planned.messages:
                self.ingestor.store_planned(planned)
            return True
        except Exception as exc:  # noqa: BLE001 - storage failed: nothing of the batch is acked
            self.errors.append(f"store: {type(exc).__name__}: {exc}"[:300])
            self.db_retries += 1
            self._reopen_db()
            return False

    def _broker_shed(self, payload: bytes) -> None:
        """A node's report of what its per-client limit dropped: counted as the
        client's ``flood_shed`` (the telemetry_flood alert), once however often it
        arrives (FleetDB.apply_broker_shed)."""
        try:
            r = shed_report.parse(payload)
        except ValueError as exc:
            self.errors.append(str(exc))
            return
        n = self.db.apply_broker_shed(r.node, r.boot, r.client, r.total)
        if n:
            self.shed[r.client] = self.shed.get(r.client, 0) + n

    def _reopen_db(self) -> None:
        delay = 0.2
        while not self.stopping.is_set():
            try:
                self.db.reopen()
                return
            except Exception as exc:  # noqa: BLE001 - server still down: retry
                self.errors.append(f"db: {type(exc).__name__}"[:200])
                time.sleep(delay)
                delay = min(2.0, delay * 2)

    # -- I/O thread --------------------------------------------------------------
    def _settle(self, ch: Any, tag: int, count: int, ok: bool) -> None:
        self._in_hand -= count
        self._last_settle = time.monotonic()  # a freed window: deliveries may follow
        if ch.is_open:
            self._send_settlement(ch, tag, ok)

    def _send_settlement(self, ch: Any, tag: int, ok: bool) -> None:
        if ok:
            ch.basic_ack(tag, multiple=True)
        else:
            ch.basic_nack(tag, multiple=True, requeue=True)

    def _check_stall(self, ch: Any, idle_since: float, served: set[str]) -> float:
        """Probe the partitions this connection was served from, when idle with
        nothing in hand; returns the new idle mark."""
        now = time.monotonic()
        idle_since = max(idle_since, self._last_settle)
        if self._in_hand or now - idle_since < self.stall_s:
            return idle_since
        ready = sum(ch.queue_declare(q, passive=True).method.message_count for q in sorted(served))
        if ready:
            raise _Stalled(f"no delivery for {now - idle_since:.0f}s with {ready} ready")
        return now

    def _consume(self, conn: Any, done: Any) -> None:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=self.prefetch)
        batch: list[tuple[int, str, bytes]] = []
        mark = {"first": 0.0, "last": time.monotonic()}
        queue_of: dict[str, str] = {}  # consumer tag -> partition
        served: set[str] = set()  # partitions this connection got deliveries from

        def on_message(_ch: Any, method: Any, _props: Any, body: bytes) -> None:
            if not batch:
                mark["first"] = time.monotonic()
            mark["last"] = time.monotonic()
            self._in_hand += 1
            if method.consumer_tag in queue_of:  # (not one handed back meanwhile)
                served.add(queue_of[method.consumer_tag])
            batch.append((method.delivery_tag, routing_key_topic(method.routing_key), body))
            if len(batch) >= self.batch_max:
                # handed over at once: one process_data_events call may dispatch a
                # whole prefetch window, and a batch that large would leave the
                # storer idle while it is read and the broker idle while it is stored
                hand_over()

        def hand_over() -> None:
            """The batch to the storer, planned (a copy: on_message keeps appending to
            ``batch``)."""
            now = time.time()
            self._work.put((conn, ch, batch[:], now, self._plan(batch, now)))
            batch.clear()
            self._pause_if_storer_behind()

        def consume(queues: list[str]) -> None:
            for q in queues:
                queue_of[ch.basic_consume(q, on_message)] = q

        def stand_by() -> None:
            """(Re-)register at the back of the line on the spare partitions: the
            first time as standby; later, a collector whose home they are and that
            waits gets them now (one restarted after its peer took its partitions
            over); where nobody waits, this one is the active consumer again."""
            for tag, q in list(queue_of.items()):
                if q in self.spare:
                    ch.basic_cancel(tag)  # pika nacks what it had not handed to on_message
                    del queue_of[tag]
                    served.discard(q)
            consume(self.spare)
            self.handbacks += 1

        consume(self.home)
        spare_at = time.monotonic() + self.standby_s  # then every rebalance_s
        while not done():
            if self.spare and time.monotonic() >= spare_at:
                stand_by()
                spare_at = time.monotonic() + self.rebalance_s
            conn.process_data_events(time_limit=self.batch_delay / 2)
            now = time.monotonic()
            if batch and now - mark["first"] >= self.batch_delay:
                hand_over()
            mark["last"] = self._check_stall(ch, mark["last"], served)
        if batch:
            hand_over()
        # let the storer finish what it was given and send those acks (bounded:
        # whatever is not acked when the connection closes is redelivered)
        until = time.monotonic() + 10
        while self._in_hand and conn.is_open and time.monotonic() < until:
            conn.process_data_events(time_limit=0.05)
        if conn.is_open:
            for tag in queue_of:
                ch.basic_cancel(tag)
            conn.close()

    def run(self, *, duration: float | None = None, max_records: int | None = None) -> dict[str, int]:
        import pika

        deadline = None if duration is None else time.monotonic() + duration
        cpu = time.thread_time()

        def done() -> bool:
            return (self.stopping.is_set() or (deadline is not None and time.monotonic() > deadline)
                    or (max_records is not None and self.ingestor.stats.get("accepted", 0) >= max_records))

        storer = threading.Thread(target=self._storer, name="collector-store", daemon=True)
        storer.start()
        try:
            while not done():
                conn = self._connect(done)
                if conn is None:
                    break
                self._in_hand = 0
                try:
                    self._consume(conn, done)
                except (pika.exceptions.AMQPError, OSError, _Stalled) as exc:
                    # The node went away, or serves us nothing: unacked messages go
                    # back to the queue (stored ones return as duplicates).
                    self.errors.append(f"amqp: {type(exc).__name__}: {exc}"[:200])
                    self.reconnects += 1
                    self.stalls += isinstance(exc, _Stalled)
                    if conn.is_open:
                        try:
                            conn.close()
                        except pika.exceptions.AMQPError:
                            pass
        finally:
            # the storer stores what it was given (redelivered copies become
            # duplicates) and stops retrying a database that is down
            self.stopping.set()
            self._work.put(None)
            storer.join()
            self.thread_cpu["receive"] = time.thread_time() - cpu
        return self.stats
