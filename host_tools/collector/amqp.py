"""A competing collector on the fleet broker cluster (RabbitMQ): AMQP 0-9-1 over mutual TLS.

Every collector process consumes the one durable quorum queue ``medsentry.collector``
(bound to the device topics on ``amq.topic``), so the broker splits the stream
between them. Each process verifies and decrypts its messages on its own, then
stores a batch in one transaction (``Ingestor.handle_batch``: store lock, fresh
sequence state) and only then acknowledges it (``multiple``). Whatever dies —
this process, its broker node, the database — unacknowledged messages are
redelivered (to this or another collector) and recognised as duplicates when
they were stored already: each sealed record is stored once.

Login is SASL EXTERNAL: the certificate CN is the user (no password exists).
"""
from __future__ import annotations

import ssl
import threading
import time
from typing import Any

from host_tools.broker.rabbit_config import COLLECTOR_QUEUE
from host_tools.pki import FleetPKI, Identity

from .db import FleetDB
from .ingest import Ingestor

BATCH_MAX = 128
BATCH_DELAY = 0.02
PREFETCH = 512
_SWAP = str.maketrans("./", "/.")


def routing_key_topic(routing_key: str) -> str:
    """amq.topic routing key -> MQTT topic (the MQTT plugin swaps ``.`` and ``/``)."""
    return routing_key.translate(_SWAP)


def amqp_parameters(identity: Identity, host: str, port: int) -> Any:
    import pika

    ctx = ssl.create_default_context(cafile=str(identity.ca))
    ctx.load_cert_chain(str(identity.cert), str(identity.key))
    return pika.ConnectionParameters(
        host=host, port=port, ssl_options=pika.SSLOptions(ctx, host),
        credentials=pika.credentials.ExternalCredentials(), heartbeat=10,
        connection_attempts=1, socket_timeout=5, blocked_connection_timeout=30)


class AmqpCollector:
    """``run()`` blocks until ``stop()``, ``duration`` or ``max_records`` accepted."""

    def __init__(self, pki: FleetPKI, db: FleetDB, identity: str, endpoints: list[tuple[str, int]],
                 *, batch_max: int = BATCH_MAX, batch_delay: float = BATCH_DELAY) -> None:
        if not endpoints:
            raise ValueError("no AMQP endpoint")
        self.pki = pki
        self.db = db
        self.identity = pki.client_identity(identity)
        self.endpoints = list(endpoints)
        self.batch_max = batch_max
        self.batch_delay = batch_delay
        self.ingestor = Ingestor(pki, db)
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.reconnects = 0
        self.db_retries = 0
        self._next = 0

    @property
    def stats(self) -> dict[str, int]:
        return dict(self.ingestor.stats)

    def stop(self) -> None:
        self.stopping.set()

    def _connect(self) -> Any:
        import pika

        while not self.stopping.is_set():
            host, port = self.endpoints[self._next % len(self.endpoints)]
            self._next += 1
            try:
                return pika.BlockingConnection(amqp_parameters(self.identity, host, port))
            except (pika.exceptions.AMQPError, OSError) as exc:
                self.errors.append(f"{host}:{port}: {type(exc).__name__}")
                time.sleep(0.5)
        return None

    def _store(self, ch: Any, batch: list[tuple[int, str, bytes]]) -> None:
        """Store, then ack the batch; on a database failure nack it (requeued) and
        reconnect to the database before going on."""
        try:
            self.ingestor.handle_batch([(t, b) for _, t, b in batch])
        except Exception as exc:  # noqa: BLE001 - storage failed: nothing of the batch is acked
            self.errors.append(f"store: {type(exc).__name__}: {exc}"[:300])
            self.db_retries += 1
            ch.basic_nack(batch[-1][0], multiple=True, requeue=True)
            self._reopen_db()
            return
        ch.basic_ack(batch[-1][0], multiple=True)

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

    def run(self, *, duration: float | None = None, max_records: int | None = None) -> dict[str, int]:
        import pika

        deadline = None if duration is None else time.monotonic() + duration

        def done() -> bool:
            return (self.stopping.is_set() or (deadline is not None and time.monotonic() > deadline)
                    or (max_records is not None and self.ingestor.stats.get("accepted", 0) >= max_records))

        while not done():
            conn = self._connect()
            if conn is None:
                break
            batch: list[tuple[int, str, bytes]] = []
            try:
                ch = conn.channel()
                ch.basic_qos(prefetch_count=PREFETCH)
                first = 0.0
                for method, _props, body in ch.consume(COLLECTOR_QUEUE, inactivity_timeout=self.batch_delay / 2):
                    if method is not None:
                        if not batch:
                            first = time.monotonic()
                        batch.append((method.delivery_tag, routing_key_topic(method.routing_key), body))
                    if batch and (len(batch) >= self.batch_max or time.monotonic() - first >= self.batch_delay
                                  or method is None):
                        self._store(ch, batch)
                        batch = []
                    if done():
                        break
                if conn.is_open:
                    ch.cancel()
                    conn.close()
            except (pika.exceptions.AMQPError, OSError) as exc:
                # The node went away: unacked messages go back to the queue.
                self.errors.append(f"amqp: {type(exc).__name__}"[:200])
                self.reconnects += 1
        return self.stats
