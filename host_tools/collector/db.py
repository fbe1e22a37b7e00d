"""The fleet database (SQLite, ``<workdir>/fleet.db``): telemetry, status, gaps, counters.

Or PostgreSQL, by URL (``postgresql://...``; dbconn.py). Tables are created and
changed by MIGRATIONS (``meta.schema_version`` = the last one applied):

``devices``      one row per device seen: highest accepted sequence number, counts,
                 last status (state, fw, queued, dropped) and times.
``accepted``     every accepted sealed message (telemetry or status): device, seq,
                 kid, topic, SHA-256 of the message bytes (duplicate detection).
``vitals``       decoded telemetry records, one row per (device, seq).
``status_log``   status messages (sealed, or the unsealed last-will "offline").
``updates``      update agent reports the device sent as sealed status records
                 (state ``update`` with an ``update`` map: step, version, reason,
                 ...): one row each, the whole map kept as JSON in ``detail``.
``missing``      open holes in a device's sequence (inclusive ranges).
``gaps``         log of gap events: kind ``gap`` (detected hole), ``skipped``
                 (device declared the numbers never used), ``filled`` (late arrival),
                 ``skip_refused`` (an implausible skip, not believed), ``expired``
                 (oldest hole closed at the per-device cap: still lost, not fillable).
``counters``     per device (``?`` when the topic names no valid device) and outcome:
                 accepted, duplicate, replayed, forged, malformed, unknown_kid,
                 wrong_device, retired_key, implausible_seq, status_unsealed, ignored;
                 ``lost_expired`` counts the numbers of expired holes.
``rejections``   one row per rejected message: time, topic, reason, detail, size
                 (the newest 100,000). Rejected payloads are never stored.
``posture``, ``sec_events``  posture reports and security event-log entries
                 (security_db.py).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import operator
import threading
from pathlib import Path
from typing import Any, Iterable

from . import security_db
from .dbconn import PgConnection, parse_url, pg_schema, sqlite_connect
from .outcomes import REJECTIONS
from .records import jsonable, storable_int, storable_text

MAX_REJECTION_ROWS = 100_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id     TEXT PRIMARY KEY,
    highest_seq   INTEGER,
    records       INTEGER NOT NULL DEFAULT 0,
    first_seen    REAL,
    last_seen     REAL,
    status        TEXT,
    status_sealed INTEGER,
    status_at     REAL,
    fw            TEXT,
    queued        INTEGER,
    dropped       INTEGER
);
CREATE TABLE IF NOT EXISTS accepted (
    device_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    kid         BLOB NOT NULL,
    topic       TEXT NOT NULL,
    digest      BLOB NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vitals (
    device_id    TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    t            REAL NOT NULL,
    hr           INTEGER,
    spo2         INTEGER,
    bp_sys       INTEGER,
    bp_dia       INTEGER,
    temp         REAL,
    pump_state   TEXT,
    pump_rate    REAL,
    pump_vtbi    REAL,
    pump_infused REAL,
    pump_alarms  TEXT,
    extra        TEXT,
    received_at  REAL NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS status_log (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    seq         INTEGER,
    sealed      INTEGER NOT NULL,
    state       TEXT NOT NULL,
    t           REAL,
    fw          TEXT,
    queued      INTEGER,
    dropped     INTEGER,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS updates (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    seq         INTEGER,
    t           REAL,
    step        TEXT,
    version     TEXT,
    reason      TEXT,
    detail      TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS missing (
    device_id TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL,
    PRIMARY KEY (device_id, first_seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gaps (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    detected_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    device_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (device_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rejections (
    id          INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    topic       TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT,
    size        INTEGER NOT NULL
);
"""

COMMAND_RESULTS = """
CREATE TABLE IF NOT EXISTS command_results (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    seq         INTEGER,
    t           REAL,
    cmd         TEXT,
    issuer      TEXT,
    ctr         INTEGER,
    result      TEXT NOT NULL,
    reason      TEXT,
    received_at REAL NOT NULL
);
"""

BROKER_SHED = """
CREATE TABLE IF NOT EXISTS broker_shed (
    node    TEXT NOT NULL,
    client  TEXT NOT NULL,
    boot    BIGINT NOT NULL,
    total   BIGINT NOT NULL,
    PRIMARY KEY (node, client)
);
"""

#: Schema migrations, applied in order (``meta.schema_version`` = the last applied).
#: Append new ones; never edit an applied one.
MIGRATIONS: list[tuple[int, str]] = [
    (1, SCHEMA),
    (2, "CREATE INDEX IF NOT EXISTS vitals_received ON vitals (received_at)"),
    (3, security_db.SCHEMA),  # posture reports, security event-log entries
    (4, COMMAND_RESULTS),  # signed-command results
    (5, BROKER_SHED),  # the cluster nodes' shed reports applied so far
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

#: Sealed status records with this state carry an update agent report.
UPDATE_STATE = "update"
COMMAND_STATE = "command"

VITAL_COLUMNS = ("seq", "t", "hr", "spo2", "bp_sys", "bp_dia", "temp", "pump_state",
                 "pump_rate", "pump_vtbi", "pump_infused", "pump_alarms", "received_at")


#: The whole-store lock of collectors before the per-device locks (until 2026-12-04).
OLD_STORE_LOCK = 4242


def device_lock_key(device_id: str) -> int:
    """The PostgreSQL advisory lock key (signed 64 bits) of a device's records."""
    return int.from_bytes(hashlib.sha256(b"medsentry-store:" + device_id.encode()).digest()[:8], "big",
                          signed=True)


class FleetDB:
    """Thread-safe wrapper around one database connection: SQLite (WAL,
    synchronous=FULL; a path or ``sqlite:///PATH``) or PostgreSQL
    (``postgresql://...``, see dbconn.py). Same SQL, same behaviour."""

    def __init__(self, path: str | Path) -> None:
        self.kind, where = parse_url(path)
        self.url = str(path)
        self.conn: Any
        if self.kind == "postgresql":
            self.path = Path("/nonexistent-postgresql")
            self.conn = PgConnection(where)
        else:
            self.path = Path(where)
            self.conn = sqlite_connect(str(self.path))
        self.lock = threading.RLock()
        self._batch = False
        #: Set by a caller that rolls a whole batch back on any error (no savepoints).
        self.whole_batch = False
        #: Whole-batch writes summed per key and written once before COMMIT (or before
        #: anything else touches the devices table): counter increments, and each
        #: device row's upsert (first_seen, last_seen, highest_seq, records).
        self._sum_counts: dict[tuple[str, str], int] = {}
        self._sum_devices: dict[str, list[Any]] = {}
        #: Inside deferred_writes(): rows of the two per-record inserts (``accepted``,
        #: ``vitals``), sent as one executemany (SQLite) or one COPY (PostgreSQL) each.
        self._defer: dict[str, list[tuple[Any, ...]]] | None = None
        with self.lock:
            self.migrate()

    def migrate(self) -> int:
        """Apply the missing MIGRATIONS in order, each in its own transaction; return
        the schema version. A database newer than this code is refused."""
        schema = pg_schema if self.kind == "postgresql" else (lambda s: s)
        self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        have = 0 if row is None else int(row[0])
        if have > SCHEMA_VERSION:
            raise RuntimeError(f"{self.url}: schema version {have}, this collector knows {SCHEMA_VERSION}")
        for version, ddl in MIGRATIONS[have:]:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                if self.kind == "postgresql":  # concurrent collectors migrate one at a time
                    self.conn.execute("SELECT pg_advisory_xact_lock(4243)")
                row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None or int(row[0]) < version:
                    for stmt in schema(ddl).split(";"):
                        if stmt.strip():
                            self.conn.execute(stmt)
                    self.conn.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT(key) "
                                      "DO UPDATE SET value = excluded.value", (str(version),))
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        return SCHEMA_VERSION

    @contextlib.contextmanager
    def deferred_writes(self) -> Any:
        """The per-record inserts into ``accepted`` and ``vitals`` are kept and sent
        as one executemany (SQLite) or one COPY (PostgreSQL) each, before anything
        reads ``accepted`` and at the end; discarded if the block raises.
        PostgreSQL also sends the batch's other writes as one executemany per
        statement (dbconn.PgConnection.deferred_writes)."""
        self._defer = {ACCEPT_SQL: [], VITALS_SQL: []}
        try:
            with self.conn.deferred_writes() if self.kind == "postgresql" else contextlib.nullcontext():
                yield
                self._flush_deferred()
        finally:
            self._defer = None

    def _flush_deferred(self) -> None:
        if self._defer:
            for sql, rows in self._defer.items():
                if rows:
                    if self.kind == "postgresql":
                        self.conn.copy_rows(_TABLE_OF[sql], rows)
                    else:
                        # In primary-key order: a batch holds many devices' records
                        # interleaved, and a row in key order lands next to the one
                        # before in the B-tree. Both tables and the COMMIT, batches
                        # of 1,024 over 32 devices: 12.5 -> 8.1 us per record
                        # (bench/bench_sqlite_key_order.py; on PostgreSQL no gain was
                        # measured). One transaction: the order of its inserts
                        # changes nothing stored.
                        rows.sort(key=_PRIMARY_KEY)
                        self._sqlite_insert_rows(sql, rows)
                    rows.clear()

    def _sqlite_insert_rows(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """``sql`` (one row's INSERT) for every row, SQLITE_ROWS_PER_INSERT rows per
        statement and the rest by executemany: the sqlite3 module releases the
        interpreter lock around every statement step, i.e. once per row in an
        executemany, and each release hands the lock to pika's thread."""
        k = SQLITE_ROWS_PER_INSERT
        full = len(rows) - len(rows) % k
        if full:
            head, values = sql.split(" VALUES ")
            many = f"{head} VALUES {', '.join([values] * k)}"
            for i in range(0, full, k):
                self.conn.execute(many, [x for row in rows[i:i + k] for x in row])
        if full < len(rows):
            self.conn.executemany(sql, rows[full:])

    def lock_store(self, devices: list[str]) -> None:
        """Inside a batch: serialise storing the given devices' records with other
        collector processes. SQLite's BEGIN IMMEDIATE already locks the whole
        database. PostgreSQL takes one transaction advisory lock per device, in
        one order for every process (so two batches never wait on each other in a
        cycle): batches of different devices store in parallel. It also holds
        OLD_STORE_LOCK shared: a collector of the previous version (which took it
        exclusively for every batch) and this one exclude each other during a
        rolling upgrade."""
        if self.kind == "postgresql" and devices:
            keys = sorted(device_lock_key(d) for d in set(devices))
            self.conn.execute("SELECT pg_advisory_xact_lock_shared(?), "
                              "(SELECT count(pg_advisory_xact_lock(k)) FROM unnest(?::bigint[]) AS k)",
                              (OLD_STORE_LOCK, keys))

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def reopen(self) -> None:
        """A new connection (after the server restarted or the connection broke)."""
        with self.lock:
            self._batch = False
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - the old connection is already broken
                pass
            _, where = parse_url(self.url)
            self.conn = PgConnection(where) if self.kind == "postgresql" else sqlite_connect(where)

    # -- transactions ------------------------------------------------------------
    def transaction(self) -> "_Txn":
        """One message's writes, atomically. Inside a batch it is a savepoint."""
        return _Txn(self)

    @property
    def in_batch(self) -> bool:
        return self.conn.in_transaction and self._batch

    def begin_batch(self) -> None:
        """Group the following messages into one commit (the collector acknowledges
        them only after ``commit_batch``)."""
        with self.lock:
            if not self._batch:
                self.conn.execute("BEGIN IMMEDIATE")
                self._batch = True

    def rollback_batch(self) -> None:
        with self.lock:
            self._batch = False
            self._sum_counts.clear()
            self._sum_devices.clear()
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")

    def commit_batch(self) -> None:
        with self.lock:
            if self._batch:
                with self.pipelined():  # the sums and COMMIT in one round trip
                    self._flush_sums()
                    self._batch = False
                    self.conn.execute("COMMIT")

    def pipelined(self) -> Any:
        """PostgreSQL: the statements inside go to the server together, one round trip
        (psycopg pipeline mode; a result read inside waits for what was sent before
        it; an error is raised at the latest when the block ends). SQLite: nothing."""
        return self.conn.pipeline() if self.kind == "postgresql" else contextlib.nullcontext()

    @property
    def summing(self) -> bool:
        """Writes of this batch may be summed (a whole-batch caller: all or nothing)."""
        return self.whole_batch and self._batch

    def accept_in_order(self, device_id: str, seq: int, kid: bytes, topic: str, digest: bytes,
                        now: float, rec: Any, extra: str) -> bool:
        """The common record of a whole batch, a telemetry record next in order, written
        as ``transaction`` writes it (accept, vitals, one ``accepted``) without a
        transaction object of its own: the batch is all or nothing already. False, and
        nothing written, outside a whole batch with deferred writes (then the caller
        uses ``transaction``). Measured in the storer's store phase: 2.4 us per
        record against 3.3 through ``transaction``."""
        defer = self._defer
        if defer is None or not (self.whole_batch and self._batch):
            return False
        defer[ACCEPT_SQL].append((device_id, seq, kid, topic, digest, now))
        defer[VITALS_SQL].append(_vitals_row(device_id, rec, now, extra))
        self._sum_device(device_id, now, seq)
        key = (device_id, "accepted")
        self._sum_counts[key] = self._sum_counts.get(key, 0) + 1
        return True

    def _sum_device(self, device_id: str, now: float, highest: int) -> None:
        """A record's refresh of its device row, summed for the batch's end."""
        pending = self._sum_devices.get(device_id)
        if pending is None:  # [first_seen, last_seen, highest_seq, records]
            self._sum_devices[device_id] = [now, now, highest, 1]
        else:
            pending[1], pending[2], pending[3] = now, highest, pending[3] + 1

    def _flush_sums(self) -> None:
        self._flush_device_sums()
        counts, self._sum_counts = self._sum_counts, {}
        # Sorted: rows every process may touch (the "?" device's counters) are
        # locked in one order, so concurrent batches cannot deadlock.
        if counts:
            self._write_rows(COUNTERS_SQL, COUNTERS_PG,
                             [(dev, name, n) for (dev, name), n in sorted(counts.items())])

    def _flush_device_sums(self) -> None:
        """Upsert the device rows the batch's records summed so far (also before any
        other write of the devices table: a status update needs its row)."""
        devices, self._sum_devices = self._sum_devices, {}
        if devices:
            self._write_rows(DEVICES_SQL, DEVICES_PG, [(dev, *v) for dev, v in sorted(devices.items())])

    def _write_rows(self, sql: str, pg_sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Many rows in one statement: SQLite executemany (a C loop), PostgreSQL one
        statement over arrays (``pg_sql`` with unnest: psycopg's executemany costs
        ~15 us of Python per row)."""
        if self.kind == "postgresql":
            self.conn.execute(pg_sql, [list(col) for col in zip(*rows)])
        else:
            self.conn.executemany(sql, rows)

    # -- state loading (collector start) -------------------------------------------
    def load_sequence_state(self, devices: list[str] | None = None
                            ) -> dict[str, tuple[int | None, list[list[int]], float | None]]:
        """{device: (highest_seq, [[first, last], ...] open holes, last_seen)}, of all
        devices or of those listed."""
        where = ""
        args: tuple[Any, ...] = ()
        if devices is not None and self.kind == "postgresql":
            # one statement text whatever the number of devices (prepared once)
            where, args = " WHERE device_id = ANY(?)", (list(devices),)
        elif devices is not None:
            where = f" WHERE device_id IN ({', '.join('?' * len(devices))})" if devices else " WHERE 1=0"
            args = tuple(devices)
        with self.lock:
            out: dict[str, tuple[int | None, list[list[int]], float | None]] = {}
            # both sent before either is read (one round trip inside ``pipelined``)
            rows = self.conn.execute("SELECT device_id, highest_seq, last_seen FROM devices" + where, args)
            holes = self.conn.execute("SELECT device_id, first_seq, last_seq FROM missing" + where
                                      + " ORDER BY device_id, first_seq", args)
            for r in rows:
                out[r["device_id"]] = (r["highest_seq"], [], r["last_seen"])
            for r in holes:
                out.setdefault(r["device_id"], (None, [], None))[1].append([r["first_seq"], r["last_seq"]])
            return out

    def load_counters(self) -> dict[str, dict[str, int]]:
        with self.lock:
            out: dict[str, dict[str, int]] = {}
            for r in self.conn.execute("SELECT device_id, name, count FROM counters"):
                out.setdefault(r["device_id"], {})[r["name"]] = r["count"]
            return out

    def accepted_digest(self, device_id: str, seq: int) -> bytes | None:
        with self.lock:
            self._flush_deferred()  # a redelivery within the batch reads its first copy
            r = self.conn.execute("SELECT digest FROM accepted WHERE device_id=? AND seq=?",
                                  (device_id, seq)).fetchone()
            return None if r is None else bytes(r[0])

    # -- queries (export, summaries, tests) --------------------------------------------
    def vitals(self, device_id: str) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.conn.execute(
                f"SELECT {', '.join(VITAL_COLUMNS)}, extra FROM vitals WHERE device_id=? ORDER BY seq",
                (device_id,),
            ).fetchall()
        out = []
        for r in rows:
            d = {k: r[k] for k in VITAL_COLUMNS}
            d["pump_alarms"] = json.loads(r["pump_alarms"]) if r["pump_alarms"] is not None else None
            d["extra"] = json.loads(r["extra"]) if r["extra"] else {}
            out.append(d)
        return out

    def seqs(self, device_id: str) -> list[int]:
        with self.lock:
            return [r[0] for r in self.conn.execute(
                "SELECT seq FROM vitals WHERE device_id=? ORDER BY seq", (device_id,))]

    def missing(self, device_id: str) -> list[tuple[int, int]]:
        with self.lock:
            return [(r[0], r[1]) for r in self.conn.execute(
                "SELECT first_seq, last_seq FROM missing WHERE device_id=? ORDER BY first_seq", (device_id,))]

    def gap_log(self, device_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.conn.execute(
                "SELECT kind, first_seq, last_seq, detected_at FROM gaps WHERE device_id=? ORDER BY id",
                (device_id,))]

    def apply_broker_shed(self, node: str, boot: int, client: str, total: int) -> int:
        """A cluster node's report (rabbit_plugin.py): its per-client limit has dropped
        ``total`` messages of ``client`` since the node booted at ``boot``. The increase
        over the last applied report of that node is counted as ``flood_shed`` and
        returned. Order- and repeat-proof, as collectors may see a report twice or
        late: the same boot counts only a higher total, a later boot all of it, an
        earlier boot nothing."""
        with self.transaction() as tx:
            self.lock_store([client])  # one device: a competing collector's report waits
            row = self.conn.execute("SELECT boot, total FROM broker_shed WHERE node=? AND client=?",
                                    (node, client)).fetchone()
            if row is None or boot > int(row[0]):
                n = total
            elif boot == int(row[0]):
                n = max(0, total - int(row[1]))
            else:
                n = 0
            if n > 0:
                self.conn.execute("INSERT INTO broker_shed VALUES (?, ?, ?, ?) ON CONFLICT(node, client) "
                                  "DO UPDATE SET boot = excluded.boot, total = excluded.total",
                                  (node, client, boot, total))
                tx.bump(client, "flood_shed", n)
        return n

    def counters(self, device_id: str | None = None) -> dict[str, int]:
        """Counters of one device, or summed over all devices."""
        with self.lock:
            if device_id is None:
                rows = self.conn.execute("SELECT name, SUM(count) FROM counters GROUP BY name")
            else:
                rows = self.conn.execute("SELECT name, count FROM counters WHERE device_id=?", (device_id,))
            return {r[0]: int(r[1]) for r in rows}

    def device(self, device_id: str) -> dict[str, Any] | None:
        with self.lock:
            self._flush_device_sums()  # inside a batch: its records so far
            r = self.conn.execute("SELECT * FROM devices WHERE device_id=?", (device_id,)).fetchone()
            return None if r is None else dict(r)

    def device_ids(self) -> list[str]:
        with self.lock:
            return [r[0] for r in self.conn.execute("SELECT device_id FROM devices ORDER BY device_id")]

    def status_log(self, device_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.conn.execute(
                "SELECT seq, sealed, state, t, fw, queued, dropped, received_at FROM status_log "
                "WHERE device_id=? ORDER BY id", (device_id,))]

    def updates(self, device_id: str | None = None) -> list[dict[str, Any]]:
        """Update agent reports (oldest first), ``detail`` decoded."""
        with self.lock:
            if device_id is None:
                rows = self.conn.execute("SELECT * FROM updates ORDER BY id")
            else:
                rows = self.conn.execute("SELECT * FROM updates WHERE device_id=? ORDER BY id", (device_id,))
            out = []
            for r in rows:
                d = dict(r)
                d["detail"] = json.loads(d["detail"])
                out.append(d)
            return out

    def command_results(self, device_id: str | None = None) -> list[dict[str, Any]]:
        """Signed-command results the devices reported (oldest first)."""
        with self.lock:
            if device_id is None:
                rows = self.conn.execute("SELECT * FROM command_results ORDER BY id")
            else:
                rows = self.conn.execute("SELECT * FROM command_results WHERE device_id=? ORDER BY id",
                                         (device_id,))
            return [dict(r) for r in rows]

    def update_counts(self) -> dict[str, int]:
        with self.lock:
            return {r[0]: int(r[1]) for r in self.conn.execute(
                "SELECT device_id, COUNT(*) FROM updates GROUP BY device_id")}

    def rejections(self, device_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            if device_id is None:
                rows = self.conn.execute("SELECT * FROM rejections ORDER BY id")
            else:
                rows = self.conn.execute("SELECT * FROM rejections WHERE device_id=? ORDER BY id", (device_id,))
            return [dict(r) for r in rows]

    def summary(self, sent: int | None = None) -> dict[str, Any]:
        """Fleet-wide telemetry counts for reports (e.g. demo-out/summary.json):
        ``sent`` (given by the caller), ``stored`` (telemetry rows), ``lost`` (missing
        sequence numbers), ``rejected`` (all rejection reasons), ``duplicates_dropped``,
        plus ``rejected_by_reason``."""
        counters = self.counters()
        with self.lock:
            stored = int(self.conn.execute("SELECT COUNT(*) FROM vitals").fetchone()[0])
        by_reason = {r: counters.get(r, 0) for r in REJECTIONS if counters.get(r, 0)}
        return {
            "sent": sent,
            "stored": stored,
            "lost": self.lost(),
            "rejected": sum(by_reason.values()),
            "duplicates_dropped": counters.get("duplicate", 0),
            "rejected_by_reason": by_reason,
        }

    def lost(self, device_id: str | None = None) -> int:
        """Sequence numbers still missing (gaps not filled and not declared skipped),
        plus those of holes closed as expired (counter ``lost_expired``)."""
        where, args = ("", ()) if device_id is None else (" WHERE device_id=?", (device_id,))
        with self.lock:
            open_ = self.conn.execute(
                "SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) FROM missing" + where, args).fetchone()[0]
            expired = self.conn.execute(
                "SELECT COALESCE(SUM(count), 0) FROM counters WHERE name='lost_expired'"
                + ("" if device_id is None else " AND device_id=?"), args).fetchone()[0]
            return int(open_) + int(expired)


ACCEPT_SQL = "INSERT INTO accepted VALUES (?, ?, ?, ?, ?, ?)"
VITALS_SQL = "INSERT INTO vitals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_TABLE_OF = {ACCEPT_SQL: "accepted", VITALS_SQL: "vitals"}
#: Both tables' primary key (device_id, seq): their rows' first two columns.
_PRIMARY_KEY = operator.itemgetter(0, 1)
#: Rows per multi-row INSERT on SQLite (FleetDB._sqlite_insert_rows): 64 x 15 columns
#: stays under the oldest SQLite limit of 999 parameters. In the AMQP collector it
#: stored 8% more records/s than one executemany (three A/B rounds;
#: bench/fleet_sizing_rounds.md, round 8).
SQLITE_ROWS_PER_INSERT = 64
COUNTERS_SQL = ("INSERT INTO counters VALUES (?, ?, ?) ON CONFLICT(device_id, name) "
                "DO UPDATE SET count = counters.count + excluded.count")
COUNTERS_PG = ("INSERT INTO counters SELECT * FROM unnest(?::text[], ?::text[], ?::bigint[]) "
               "ON CONFLICT(device_id, name) DO UPDATE SET count = counters.count + excluded.count")
_DEVICE_COLUMNS = "INSERT INTO devices (device_id, first_seen, last_seen, highest_seq, records) "
_DEVICE_CONFLICT = (" ON CONFLICT(device_id) DO UPDATE SET last_seen = excluded.last_seen, "
                    "highest_seq = excluded.highest_seq, records = devices.records + excluded.records")
DEVICES_SQL = _DEVICE_COLUMNS + "VALUES (?, ?, ?, ?, ?)" + _DEVICE_CONFLICT
DEVICES_PG = (_DEVICE_COLUMNS + "SELECT * FROM unnest(?::text[], ?::float8[], ?::float8[], ?::bigint[], "
              "?::bigint[])" + _DEVICE_CONFLICT)


def _report_text(v: Any) -> str | None:
    """A text field of an update or command report as stored (None stays None)."""
    return None if v is None else storable_text(v, 200)


def _vitals_row(device_id: str, rec: Any, now: float, extra: str) -> tuple[Any, ...]:
    """A telemetry record's row of ``vitals`` (VITALS_SQL)."""
    return (device_id, rec.seq, rec.t, rec.hr, rec.spo2, rec.bp_sys, rec.bp_dia, rec.temp,
            rec.pump_state, rec.pump_rate, rec.pump_vtbi, rec.pump_infused,
            None if rec.pump_alarms is None else json.dumps(rec.pump_alarms), extra or None, now)


class _Txn:
    """``with db.transaction() as tx:`` — all writes of one message, atomically."""

    def __init__(self, db: FleetDB) -> None:
        self.db = db
        self.c = db.conn

    def __enter__(self) -> "_Txn":
        self.db.lock.acquire()
        # A whole-batch caller (Ingestor.handle_batch) has begun the batch and rolls
        # it back on any error, so its messages need no savepoint each (and the
        # driver is not asked, once per message, whether a transaction is open).
        self.nested = self.db.whole_batch or self.db.in_batch
        self.savepoint = self.nested and not self.db.whole_batch
        try:
            if self.savepoint or not self.nested:
                self.c.execute("SAVEPOINT msg" if self.nested else "BEGIN IMMEDIATE")
        except BaseException:
            self.db.lock.release()
            raise
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if self.savepoint:
                if exc_type:
                    self.c.execute("ROLLBACK TO msg")
                self.c.execute("RELEASE msg")
            elif not self.nested:
                self.c.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.db.lock.release()

    def bump(self, device_id: str, name: str, n: int = 1) -> None:
        if self.db.summing:
            key = (device_id, name)
            self.db._sum_counts[key] = self.db._sum_counts.get(key, 0) + n
            return
        self.c.execute(COUNTERS_SQL, (device_id, name, n))

    def reject(self, now: float, topic: str, device_id: str, reason: str, detail: str, size: int) -> None:
        # the log of a refusal must always be storable (no NUL in PostgreSQL text)
        row_id = self.c.execute("INSERT INTO rejections (received_at, topic, device_id, reason, detail, size) "
                                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                                (now, storable_text(topic), device_id, reason, storable_text(detail, 200),
                                 size)).fetchone()[0]
        # Bounded log (a flood of bad messages must not fill the disk); the
        # counters keep the full totals.
        if row_id and row_id % 1000 == 0:
            self.c.execute("DELETE FROM rejections WHERE id <= ?", (row_id - MAX_REJECTION_ROWS,))

    def touch_device(self, device_id: str, now: float) -> None:
        """Create the device row / refresh last_seen (``accept`` does it for records)."""
        self.db._flush_device_sums()
        self.c.execute("INSERT INTO devices (device_id, first_seen, last_seen) VALUES (?, ?, ?) "
                       "ON CONFLICT(device_id) DO UPDATE SET last_seen = excluded.last_seen",
                       (device_id, now, now))

    def accept(self, device_id: str, seq: int, kid: bytes, topic: str, digest: bytes,
               now: float, highest: int) -> None:
        row = (device_id, seq, kid, topic, digest, now)
        if self.db._defer is not None:
            self.db._defer[ACCEPT_SQL].append(row)
        else:
            self.c.execute(ACCEPT_SQL, row)
        if self.db.summing:
            self.db._sum_device(device_id, now, highest)
            return
        self.c.execute(DEVICES_SQL, (device_id, now, now, highest, 1))

    def vitals(self, device_id: str, rec: Any, now: float, extra: str) -> None:
        row = _vitals_row(device_id, rec, now, extra)
        if self.db._defer is not None:
            self.db._defer[VITALS_SQL].append(row)
        else:
            self.c.execute(VITALS_SQL, row)

    def status(self, device_id: str, st: Any, now: float) -> None:
        self.db._flush_device_sums()  # the device's row exists before it is updated
        self.c.execute(
            "INSERT INTO status_log (device_id, seq, sealed, state, t, fw, queued, dropped, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (device_id, st.seq, int(st.sealed), st.state, st.t, st.fw, st.queued, st.dropped, now))
        if st.state in security_db.STATES:
            # Posture reports and security events (security_db.py) leave the
            # device's link status alone.
            security_db.store(self.c, device_id, st, now)
            return
        if st.state == COMMAND_STATE:
            self._command_result(device_id, st, now)
            return
        if st.state == UPDATE_STATE:
            # An update report says nothing about the link: keep the device's
            # status (online/offline), refresh only what the record carries.
            self.c.execute(
                "UPDATE devices SET fw = COALESCE(?, fw), queued = COALESCE(?, queued), "
                "dropped = COALESCE(?, dropped) WHERE device_id = ?",
                (st.fw, st.queued, st.dropped, device_id))
            upd = st.extra.get("update")
            if isinstance(upd, dict):
                self.c.execute(
                    "INSERT INTO updates (device_id, seq, t, step, version, reason, detail, received_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (device_id, st.seq, st.t, _report_text(upd.get("step")), _report_text(upd.get("version")),
                     _report_text(upd.get("reason")), json.dumps(jsonable(upd)), now))
            return
        self.c.execute(
            "UPDATE devices SET status = ?, status_sealed = ?, status_at = ?, "
            "fw = COALESCE(?, fw), queued = COALESCE(?, queued), dropped = COALESCE(?, dropped) "
            "WHERE device_id = ?",
            (st.state, int(st.sealed), now, st.fw, st.queued, st.dropped, device_id))

    def _command_result(self, device_id: str, st: Any, now: float) -> None:
        # A command result says nothing about the link either: only recorded.
        res = st.extra.get("command")
        if not isinstance(res, dict):
            return
        ctr = storable_int(res.get("ctr"))
        self.c.execute(
            "INSERT INTO command_results (device_id, seq, t, cmd, issuer, ctr, result, reason, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (device_id, st.seq, st.t, _report_text(res.get("cmd")), _report_text(res.get("issuer")),
             ctr, _report_text(res.get("result")) or "?", _report_text(res.get("reason")), now))

    def change_missing(self, device_id: str, deleted: Iterable[tuple[int, int]],
                       added: Iterable[tuple[int, int]]) -> None:
        """Close and open holes one row each (never rewrite all of a device's holes)."""
        for a, _ in deleted:
            self.c.execute("DELETE FROM missing WHERE device_id = ? AND first_seq = ?", (device_id, a))
        for a, b in added:
            self.c.execute("INSERT INTO missing VALUES (?, ?, ?)", (device_id, a, b))

    def gap_event(self, device_id: str, kind: str, first: int, last: int, now: float) -> None:
        self.c.execute("INSERT INTO gaps (device_id, kind, first_seq, last_seq, detected_at) "
                       "VALUES (?, ?, ?, ?, ?)", (device_id, kind, first, last, now))
