"""The collector's MQTT side: paho-mqtt 2.x over mutual TLS, QoS 1, persistent session.

paho's ``on_message`` only appends each message to the receive spool
(``spool.py``: SQLite, its own file) and acknowledges it (manual PUBACK) once the
spool committed, so a record is on disk before the broker forgets it. A store
thread takes the spooled messages round-robin per device, verifies and stores
them (``Ingestor.handle``) in batches, and removes them from the spool after the
fleet database committed: one device publishing faster than storing drains delays
only its own records (issue 11). If spooling fails nothing more is acknowledged;
if storing fails the collector stops and the spool keeps the rest for the next
start. A message stored twice (a crash between the two commits, a redelivery) is
recognised as a duplicate. The session is persistent (clean_session=False)
so the broker queues records while the collector is away. The broker makes the
certificate CN the client id (host_tools/broker/NOTES.md), so each collector
instance needs its own identity (``collector``, ``collector-b``, ...).
"""
from __future__ import annotations

import ssl
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import paho.mqtt.client as mqtt

from host_tools.pki import FleetPKI, Identity

from . import shed_report
from .db import FleetDB
from .ingest import Ingestor, Outcome
from .spool import RATE as SPOOL_RATE
from .spool import Spool

#: The broker's own reports of what its per-client rate limit dropped
#: (host_tools/broker/ratelimit/): JSON {"client", "shed" (running total), ...}.
BROKER_SHED_TOPIC = shed_report.TOPIC
SUBSCRIPTIONS = ("medsentry/+/telemetry", "medsentry/+/status", BROKER_SHED_TOPIC)
#: Messages are stored in batches of at most BATCH_MAX (one SQLite commit) and
#: acknowledged right after the commit, at the latest BATCH_DELAY s after arrival.
#: Keep BATCH_MAX below the broker's max_inflight_messages (100 in our config).
BATCH_MAX = 64
BATCH_DELAY = 0.01


@dataclass
class CollectorConfig:
    host: str
    port: int
    #: Sent in CONNECT; the broker replaces it with the certificate CN anyway.
    client_id: str | None = None
    identity: str = "collector"
    keepalive: int = 30
    clean_session: bool = False
    #: The receive spool's file [default: <workdir>/collector-spool-<identity>.db].
    spool: str | None = None
    #: Records per second one device is stored at most (spool.RATE); None: no limit
    #: (bench/bench_collector.py measures the total capacity with one device).
    store_rate: float | None = SPOOL_RATE


def tls_client(identity: Identity, client_id: str, *, clean_session: bool = True,
               protocol: int = mqtt.MQTTv311, manual_ack: bool = False) -> mqtt.Client:
    """A paho 2.x client configured for mutual TLS with a fleet identity."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=clean_session, protocol=protocol, manual_ack=manual_ack)
    client.tls_set(ca_certs=str(identity.ca), certfile=str(identity.cert), keyfile=str(identity.key),
                   cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return client


class Collector:
    """Subscribe, verify, store. ``run()`` blocks; ``start()``/``stop()`` for tests."""

    def __init__(self, pki: FleetPKI, db: FleetDB, config: CollectorConfig,
                 on_outcome: Callable[[Outcome], None] | None = None) -> None:
        self.pki = pki
        self.db = db
        self.config = config
        self.ingestor = Ingestor(pki, db)
        self.on_outcome = on_outcome
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.done = threading.Event()
        self.max_records: int | None = None
        self.errors: list[str] = []
        self.failed = False
        self._batch_lock = threading.RLock()
        self._pending: list[tuple[int, int]] = []
        self._pending_since = 0.0
        self._stop_flusher = threading.Event()
        self._flusher_thread: threading.Thread | None = None
        self.spool = Spool(config.spool or Path(pki.workdir) / f"collector-spool-{config.identity}.db",
                           rate=config.store_rate)
        self._stop_store = threading.Event()
        self._drain_until = 0.0
        self._store_thread: threading.Thread | None = None
        self._stored = threading.Condition()
        self.shed: dict[str, int] = {}
        self._broker_totals: dict[str, int] = {}  # client -> the broker's last reported shed total
        self.client = tls_client(pki.client_identity(config.identity), config.client_id or config.identity,
                                 clean_session=config.clean_session, manual_ack=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    @property
    def stats(self) -> dict[str, int]:
        return dict(self.ingestor.stats)

    # -- paho callbacks (network thread) ------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object,
                    properties: object = None) -> None:
        if getattr(reason, "is_failure", False):
            self.errors.append(f"connect refused: {reason}")
            return
        self.connected.set()
        client.subscribe([(t, 1) for t in SUBSCRIPTIONS])

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, reasons: list, properties: object) -> None:
        if any(getattr(r, "is_failure", False) for r in reasons):
            self.errors.append(f"subscription refused: {reasons}")
        else:
            self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason: object,
                       properties: object = None) -> None:
        self.connected.clear()
        self.subscribed.clear()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._batch_lock:
            if self.failed:
                return  # never acknowledged: redelivered to the next session
            try:
                if msg.topic == BROKER_SHED_TOPIC:
                    self._broker_shed(bytes(msg.payload))
                else:
                    self.spool.add(msg.topic, bytes(msg.payload), bool(msg.retain))  # False: shed, acked in turn
            except Exception as exc:  # noqa: BLE001 - spool failure: do not ack, stop
                self._fail(exc)
                return
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append((msg.mid, msg.qos))
            if len(self._pending) >= BATCH_MAX:
                self._flush_locked()

    def _broker_shed(self, payload: bytes) -> None:
        """What the broker dropped for one client since it started: the increase
        since the last report is counted like the spool's own shedding (flood_shed,
        the telemetry_flood alert). A total below the last one: the broker restarted."""
        try:
            client, total = shed_report.parse(payload)[:2]
        except ValueError as exc:
            self.errors.append(str(exc))
            return
        last = self._broker_totals.get(client, 0)
        self._broker_totals[client] = total
        n = total - last if total >= last else total
        if n > 0:
            self.spool.add_shed(client, n)

    # -- the store thread: spool -> fleet database, devices in turn -------------
    def _store_loop(self) -> None:
        while True:
            if self._stop_store.is_set() and (not self.spool.backlog() or time.monotonic() > self._drain_until):
                return
            rows = self.spool.take(0.05)
            shed = self.spool.take_shed()
            if not rows and not shed:
                continue
            try:
                # one transaction for the batch, planned first, as the AMQP collector's
                # storer does (message by message, with a savepoint each, the process
                # spent 2.4x the CPU per record: bench/fleet_sizing_rounds.md, round 13)
                outs = self.ingestor.handle_batch([(t, p) for _, t, p, _ in rows],
                                                  retained=[r for _, _, _, r in rows]) if rows else []
                if shed:
                    self.db.begin_batch()
                    with self.db.transaction() as tx:
                        for dev, n in shed.items():
                            tx.bump(dev, "flood_shed", n)
                    self.db.commit_batch()
            except Exception as exc:  # noqa: BLE001 - storage failure: the spool keeps them, stop
                with self._batch_lock:
                    self._fail(exc)
                return
            self.spool.done(rows)
            for dev, n in shed.items():
                self.shed[dev] = self.shed.get(dev, 0) + n
            with self._stored:
                self._stored.notify_all()
            if self.on_outcome is not None:
                for out in outs:
                    self.on_outcome(out)
            if self.max_records is not None and self.ingestor.stats.get("accepted", 0) >= self.max_records:
                self.done.set()

    # -- batching: commit, then acknowledge ----------------------------------------
    def _fail(self, exc: BaseException) -> None:
        """Storage failed: acknowledge nothing more, roll back, stop."""
        self.failed = True
        self.errors.append(f"{type(exc).__name__}: {exc}")
        self._pending.clear()
        try:
            self.spool.rollback()
            self.db.rollback_batch()
        except Exception:  # noqa: BLE001 - already failing; the error is recorded
            pass
        self.done.set()
        self.client.disconnect()

    def _flush_locked(self) -> None:
        try:
            self.spool.commit()
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)
            return
        for mid, qos in self._pending:
            self.client.ack(mid, qos)
        self._pending.clear()

    def flush(self, timeout: float = 30.0) -> None:
        """Commit the spool, acknowledge its messages (also done every
        ``BATCH_DELAY`` seconds and every ``BATCH_MAX`` messages), and wait until
        the store thread has stored everything spooled (at most `timeout`)."""
        with self._batch_lock:
            if not self.failed:
                self._flush_locked()
        deadline = time.monotonic() + timeout
        with self._stored:
            while (self.spool.backlog() and not self.failed and self._store_thread is not None
                   and time.monotonic() < deadline):
                self._stored.wait(0.05)

    def _flusher(self) -> None:
        while not self._stop_flusher.wait(BATCH_DELAY / 2):
            with self._batch_lock:
                if self._pending and time.monotonic() - self._pending_since >= BATCH_DELAY and not self.failed:
                    self._flush_locked()

    # -- control ---------------------------------------------------------------
    def start(self, wait: float = 10.0) -> "Collector":
        """Connect and start the network thread; wait until subscribed. Nothing
        listening on the broker's address is said at once, not after `wait`."""
        try:
            socket.create_connection((self.config.host, self.config.port), timeout=min(wait, 3.0)).close()
        except ConnectionRefusedError:
            raise ConnectionError(f"collector: connection refused by {self.config.host}:{self.config.port} "
                                  "(no broker listens there: is `medsentry broker run` running?)") from None
        except OSError:
            pass  # unreachable or slow: the MQTT connect below says what it finds
        self._stop_flusher.clear()
        self._flusher_thread = threading.Thread(target=self._flusher, name="collector-flush", daemon=True)
        self._flusher_thread.start()
        self._stop_store.clear()
        self._store_thread = threading.Thread(target=self._store_loop, name="collector-store", daemon=True)
        self._store_thread.start()
        self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive)
        self.client.loop_start()
        if not self.subscribed.wait(wait):
            self.stop()
            raise ConnectionError(f"collector could not connect/subscribe to "
                                  f"{self.config.host}:{self.config.port}: {self.errors or 'timeout'}")
        return self

    def stop(self, drain_s: float = 10.0) -> None:
        """Spool and acknowledge what arrived, disconnect, then store what the spool
        holds (at most `drain_s`; the rest is stored at the next start)."""
        self._stop_flusher.set()
        if self._flusher_thread is not None:
            self._flusher_thread.join()
            self._flusher_thread = None
        try:
            with self._batch_lock:
                if not self.failed:
                    self._flush_locked()
            self.client.disconnect()
        finally:
            self.client.loop_stop()
            self._drain_until = time.monotonic() + drain_s
            self._stop_store.set()
            if self._store_thread is not None:
                self._store_thread.join()  # ends by drain_s plus one store turn
                self._store_thread = None

    def wait_for(self, predicate: Callable[[dict[str, int]], bool], timeout: float) -> bool:
        """Poll ``predicate(stats)`` until true or ``timeout`` (tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.stats):
                return True
            time.sleep(0.02)
        return predicate(self.stats)

    def run(self, *, duration: float | None = None, max_records: int | None = None) -> dict[str, int]:
        """Run until Ctrl-C, ``duration`` seconds, or ``max_records`` accepted records."""
        self.max_records = max_records
        self.start()
        try:
            self.done.wait(duration)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
        return self.stats


def prime_session(pki: FleetPKI, host: str, port: int, identity: str = "collector",
                  timeout: float = 10.0) -> None:
    """Open ``identity``'s persistent session on the broker before any collector ran:
    connect with clean_session=False, subscribe to SUBSCRIPTIONS at QoS 1, disconnect.

    From then on the broker queues every record for the collector, so records a
    device publishes before the first ``collector`` starts are not lost (the
    README order: broker, boards, then the collector). Nothing is acknowledged
    here (manual ack): a message the broker hands this short session stays
    unacknowledged and is delivered again to the real collector."""
    client = tls_client(pki.client_identity(identity), identity, clean_session=False, manual_ack=True)
    done = threading.Event()
    errors: list[str] = []

    def on_connect(c: mqtt.Client, u: object, flags: object, reason: object, props: object = None) -> None:
        if getattr(reason, "is_failure", False):
            errors.append(f"connect refused: {reason}")
            done.set()
        else:
            c.subscribe([(t, 1) for t in SUBSCRIPTIONS])

    def on_subscribe(c: mqtt.Client, u: object, mid: int, reasons: list, props: object) -> None:
        if any(getattr(r, "is_failure", False) for r in reasons):
            errors.append(f"subscription refused: {reasons}")
        done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        raise ConnectionError(f"{identity}: cannot reach the broker at {host}:{port}: {exc}") from None
    client.loop_start()
    try:
        if not done.wait(timeout):
            errors.append("timeout")
    finally:
        client.disconnect()
        client.loop_stop()
    if errors:
        raise ConnectionError(f"could not open {identity}'s session on {host}:{port}: {'; '.join(errors)}")


def open_collector(workdir: str | Path, host: str, port: int, db_url: str | None = None,
                   **kw: object) -> Collector:
    """Collector using ``<workdir>/pki`` and ``db_url`` (default ``<workdir>/fleet.db``)."""
    pki = FleetPKI(workdir)
    db = FleetDB(db_url or Path(workdir) / "fleet.db")
    return Collector(pki, db, CollectorConfig(host=host, port=port, **kw))  # type: ignore[arg-type]
