"""Posture reports and security events in the fleet database.

Both arrive as sealed status records (SEALING.md section 8): state ``posture``
(the report's fields as keys) and state ``event`` (key ``e``: the exact bytes
of one entry of the device's hash-chained event log). Tables:

``posture``    one row per report: device, record seq, board time, event-log
               head (n, hash), integrity ok, the whole report as JSON.
``sec_events`` one row per received entry (also repeats: a resend or a forged
               copy must stay visible to ``events verify``): device, record
               seq, n, kind, severity, board time, detail JSON, the entry bytes.
"""
from __future__ import annotations

import json
import sqlite3
from typing import Any

import cbor2

from .records import jsonable, storable_int, storable_text

POSTURE_STATE = "posture"
EVENT_STATE = "event"
STATES = (POSTURE_STATE, EVENT_STATE)

SCHEMA = """
CREATE TABLE IF NOT EXISTS posture (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    seq         INTEGER,
    t           REAL,
    head_n      INTEGER,
    head_h      BLOB,
    integrity_ok INTEGER,
    report      TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS posture_dev ON posture (device_id, id);
CREATE TABLE IF NOT EXISTS sec_events (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    seq         INTEGER,
    n           INTEGER,
    kind        TEXT,
    severity    TEXT,
    t           REAL,
    detail      TEXT,
    entry       BLOB NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sec_events_dev ON sec_events (device_id, id);
"""


def decode_entry(entry: bytes) -> list[Any] | None:
    """[n, t, kind, severity, detail, prev] or None when the bytes are not an entry."""
    try:
        e = cbor2.loads(entry)
    except (cbor2.CBORDecodeError, ValueError, EOFError, OverflowError, RecursionError, TypeError):
        return None
    if (not isinstance(e, list) or len(e) != 6 or isinstance(e[0], bool) or not isinstance(e[0], int)
            or not isinstance(e[5], bytes) or len(e[5]) != 32):
        return None
    return e


def store(c: sqlite3.Connection, device_id: str, st: Any, now: float) -> None:
    """Store one sealed posture/event status record (inside the message's transaction)."""
    x = st.extra
    if st.state == POSTURE_STATE:
        ev = x.get("ev")
        head_n = head_h = None
        if isinstance(ev, list) and len(ev) == 2 and isinstance(ev[0], int) and isinstance(ev[1], bytes):
            head_n, head_h = storable_int(ev[0]), ev[1]
        integ = x.get("integrity")
        ok = None
        if isinstance(integ, dict) and isinstance(integ.get("ok"), bool):
            ok = int(integ["ok"])
        c.execute("INSERT INTO posture (device_id, seq, t, head_n, head_h, integrity_ok, report, received_at) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                  (device_id, st.seq, st.t, head_n, head_h, ok, json.dumps(jsonable(x)), now))
        return
    entry = x.get("e")
    if not isinstance(entry, bytes):
        entry = b""
    e = decode_entry(entry)
    n = kind = sev = t = detail = None
    if e is not None:
        n = storable_int(e[0])
        t = e[1] if isinstance(e[1], float) else storable_int(e[1])
        kind, sev = storable_text(e[2], 32), storable_text(e[3], 16)
        detail = json.dumps(jsonable(e[4]))[:1000]
    c.execute("INSERT INTO sec_events (device_id, seq, n, kind, severity, t, detail, entry, received_at) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (device_id, st.seq, n, kind, sev, t, detail, entry, now))


def _rows(db: Any, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    with db.lock:
        return [dict(r) for r in db.conn.execute(sql, args)]


def events(db: Any, device_id: str) -> list[dict[str, Any]]:
    """Received entries of a device in the order they were sealed (record seq)."""
    return _rows(db, "SELECT * FROM sec_events WHERE device_id=? ORDER BY seq, id", (device_id,))


def postures(db: Any, device_id: str | None = None) -> list[dict[str, Any]]:
    """Posture reports (oldest first), ``report`` decoded."""
    if device_id is None:
        rows = _rows(db, "SELECT * FROM posture ORDER BY id", ())
    else:
        rows = _rows(db, "SELECT * FROM posture WHERE device_id=? ORDER BY seq, id", (device_id,))
    for r in rows:
        r["report"] = json.loads(r["report"])
    return rows


def counts(db: Any) -> dict[str, int]:
    with db.lock:
        p = db.conn.execute("SELECT COUNT(*) FROM posture").fetchone()[0]
        e = db.conn.execute("SELECT COUNT(DISTINCT device_id || ':' || n) FROM sec_events").fetchone()[0]
    return {"posture_reports": int(p), "events": int(e)}
