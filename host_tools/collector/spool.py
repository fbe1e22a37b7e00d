"""The MQTT collector's receive spool: durable, bounded per device, drained fairly.

Why (issue 11, "one device's behaviour never delays another's records"): the
broker delivers the collector's session in arrival order, with at most
``max_inflight_messages`` unacknowledged. If storing (verify, decrypt, database)
is slower than one device can publish, that device's valid records fill the
broker's queue ahead of everyone else's; holding back their acks instead fills
the inflight window and nothing else arrives at all. So the receive path does only
cheap work: it appends each message to this spool (SQLite, WAL, its own file) and
acknowledges it once the spool committed, at the rate the network delivers. A store
thread then takes the devices' spooled messages round-robin, ``ROUND`` per device
per turn, so an honest device's record waits for at most one turn, whatever another
device sends.

Bounds: at most ``QUOTA`` messages per device wait in the spool. Beyond that a
device's messages are acknowledged and dropped (``shed``), counted per device
(the ``telemetry_flood`` alert). ``QUOTA`` is the broker's whole session queue
(``max_queued_messages``), so the burst the broker replays after a collector
outage is never shed; only a device that publishes faster than storing drains
and keeps it up loses its own excess. Crash safety: a message leaves the spool
only after the fleet database committed it; after a crash the rest is stored
again (the collector recognises what was stored already as duplicates).
"""
from __future__ import annotations

import collections
import sqlite3
import threading
import time
from pathlib import Path

from .ingest import TOPIC_RE, UNKNOWN_DEVICE

#: Messages per device waiting in the spool at most (= the broker's session queue,
#: host_tools/broker/config.py max_queued_messages: a replayed backlog fits).
QUOTA = 100_000
#: Messages taken from each device per round, and per store batch in all (one
#: database commit): rounds repeat until TAKE or nothing more may be taken.
ROUND = 16
TAKE = 256
#: Records per second one device's spooled messages are stored at most, and the
#: burst above it: about twice what the agent's flash backlog drains at on the VM
#: (~280/s: bench/bench_telemetry.py, pipeline per acked record), far above 1 Hz. Storing costs
#: CPU the receive path needs to keep up with the network; a device sending more
#: waits in the spool (then is shed at QUOTA), it does not slow the others.
RATE = 500.0
BURST = 2000.0

Row = tuple[int, str, bytes, bool]  # spool id, topic, payload, retained


def device_of(topic: str) -> str:
    m = TOPIC_RE.match(topic)
    return m.group(1) if m else UNKNOWN_DEVICE


class Spool:
    """``add`` (receive thread, inside ``lock``) -> ``commit`` -> ``take`` (store
    thread) -> ``done`` after the fleet database committed."""

    def __init__(self, path: str | Path, quota: int = QUOTA, rate: float | None = RATE) -> None:
        """`rate` None: no per-device store rate (a bench of the total capacity)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.quota = quota
        self.rate = rate
        self.lock = threading.RLock()
        self.conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")  # acked after commit: durable (dbconn.py)
        self.conn.execute("CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY, device TEXT NOT NULL, "
                          "topic TEXT NOT NULL, payload BLOB NOT NULL, retained INTEGER NOT NULL)")
        self.queues: dict[str, collections.deque[Row]] = {}
        self.shed: dict[str, int] = {}
        self._added: list[tuple[str, Row]] = []
        self._added_n: dict[str, int] = {}
        self._order: collections.deque[str] = collections.deque()
        self.ready = threading.Condition(self.lock)
        self._tokens: dict[str, list[float]] = {}  # device -> [tokens, monotonic time]
        for rid, dev, topic, payload, retained in self.conn.execute(
                "SELECT id, device, topic, payload, retained FROM spool ORDER BY id"):
            self._queue(dev).append((rid, topic, bytes(payload), bool(retained)))
        self._open = False

    def _queue(self, dev: str) -> collections.deque[Row]:
        q = self.queues.get(dev)
        if q is None:
            q = self.queues[dev] = collections.deque()
            self._order.append(dev)
        return q

    def add(self, topic: str, payload: bytes, retained: bool) -> bool:
        """Spool one message (visible to ``take`` after ``commit``). False: the
        device is over its quota, the message is shed (counted)."""
        dev = device_of(topic)
        with self.lock:
            if len(self.queues.get(dev, ())) + self._added_n.get(dev, 0) >= self.quota:
                self.shed[dev] = self.shed.get(dev, 0) + 1
                return False
            if not self._open:
                self.conn.execute("BEGIN")
                self._open = True
            rid = self.conn.execute("INSERT INTO spool (device, topic, payload, retained) VALUES (?, ?, ?, ?)",
                                    (dev, topic, payload, int(retained))).lastrowid
            self._added.append((dev, (int(rid or 0), topic, payload, retained)))
            self._added_n[dev] = self._added_n.get(dev, 0) + 1
            return True

    def commit(self) -> None:
        """Make what was added durable and visible to the store thread."""
        with self.lock:
            if self._open:
                self.conn.execute("COMMIT")
                self._open = False
            if self._added:
                for dev, row in self._added:
                    self._queue(dev).append(row)
                self._added = []
                self._added_n = {}
                self.ready.notify_all()

    def rollback(self) -> None:
        with self.lock:
            if self._open:
                self.conn.execute("ROLLBACK")
                self._open = False
            self._added = []
            self._added_n = {}

    def take(self, timeout: float) -> list[Row]:
        """One turn: up to ROUND messages of every device with messages waiting and
        rate left (RATE, BURST), devices in turn, each device's in its order ([]
        after `timeout`)."""
        with self.lock:
            if not any(self.queues.values()):
                self.ready.wait(timeout)
            now = time.monotonic()
            out: list[Row] = []
            took = True
            while took and len(out) < TAKE:
                took = False
                for _ in range(len(self._order)):
                    dev = self._order[0]
                    self._order.rotate(-1)
                    q = self.queues[dev]
                    k = min(ROUND, len(q), TAKE - len(out))
                    if k <= 0:
                        continue
                    if self.rate is not None:
                        tb = self._tokens.setdefault(dev, [BURST, now])
                        tb[0] = min(BURST, tb[0] + self.rate * (now - tb[1]))
                        tb[1] = now
                        k = min(k, int(tb[0]))
                        tb[0] -= k
                    for _ in range(k):
                        out.append(q.popleft())
                    took = took or k > 0
            if not out and any(self.queues.values()):
                self.ready.wait(min(timeout, ROUND / (self.rate or RATE)))  # only over-rate devices wait
            return out

    def done(self, rows: list[Row]) -> None:
        """The fleet database committed `rows`: they leave the spool."""
        if not rows:
            return
        with self.lock:
            ids = [(r[0],) for r in rows]
            if self._open:  # the receive side's open transaction carries them
                self.conn.executemany("DELETE FROM spool WHERE id = ?", ids)
                return
            self.conn.execute("BEGIN")
            self.conn.executemany("DELETE FROM spool WHERE id = ?", ids)
            self.conn.execute("COMMIT")

    def add_shed(self, dev: str, n: int) -> None:
        """Messages of `dev` dropped before they reached us (the broker's rate limit)."""
        with self.lock:
            self.shed[dev] = self.shed.get(dev, 0) + n

    def take_shed(self) -> dict[str, int]:
        with self.lock:
            out, self.shed = self.shed, {}
            return out

    def backlog(self) -> int:
        with self.lock:
            return sum(len(q) for q in self.queues.values())

    def close(self) -> None:
        with self.lock:
            self.rollback()
            self.conn.close()
