"""Read-only access to the fleet store that tolerates absent tables.

The store is ``<workdir>/fleet.db`` (SQLite, the embedded default) or the
PostgreSQL database the collector writes (``dbconn.fleet_db`` says which); on
PostgreSQL the session is read-only (``default_transaction_read_only``).

The collector's core tables (devices, updates, status_log) are always there once
it ran. The security agent's tables (``posture``, ``sec_events``) exist only when
the collector that wrote the database stores them; every query on them returns
``None`` ("not reported") when the table is missing, never an error.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from host_tools.collector.dbconn import (DatabaseURLError, PgConnection, is_pg_error, parse_url,
                                         store_missing)


class ReaderError(RuntimeError):
    """No fleet database, or one this reader cannot open."""


class FleetReader:
    """``conn`` and ``lock`` as on FleetDB, so helpers written for it work here."""

    def __init__(self, location: str | Path, require_devices: bool = True) -> None:
        """`location`: an SQLite path or ``sqlite:///`` URL, or a ``postgresql://`` URL.
        `require_devices=False` for callers to whom every table is optional (NAC)."""
        try:
            kind, where = parse_url(location)
        except DatabaseURLError as exc:
            raise ReaderError(str(exc)) from None
        self.path = Path(where) if kind == "sqlite" else where
        missing = store_missing(location)
        if missing:
            raise ReaderError(missing)
        self.conn: Any
        if kind == "postgresql":
            self.conn, self.tables = self._open_pg(where)
        else:
            try:
                self.conn = sqlite3.connect(f"file:{where}?mode=ro", uri=True, check_same_thread=False)
                self.conn.row_factory = sqlite3.Row
                self.tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            except sqlite3.Error as exc:
                raise ReaderError(f"{where}: not a fleet database ({exc})") from None
        if require_devices and "devices" not in self.tables:
            self.conn.close()
            raise ReaderError(f"{self.path}: not a fleet database (no devices table)")
        self.lock = threading.RLock()

    @staticmethod
    def _open_pg(url: str) -> tuple[Any, set[str]]:
        try:
            conn = PgConnection(url)
            conn.execute("SET default_transaction_read_only = on")
            tables = {r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
        except Exception as exc:  # noqa: BLE001 - psycopg's errors (refused, auth, no database) end in a message
            if not is_pg_error(exc):
                raise
            raise ReaderError(f"{url}: cannot read the fleet store ({type(exc).__name__}: {exc})") from None
        return conn, tables

    def close(self) -> None:
        self.conn.close()

    def has(self, table: str) -> bool:
        return table in self.tables

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.conn.execute(sql, args)]

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """A read-only query of the caller's own; a store error is a ReaderError."""
        try:
            return self._all(sql, args)
        except Exception as exc:  # noqa: BLE001 - sqlite3 or psycopg errors end in a message
            if not (isinstance(exc, sqlite3.Error) or is_pg_error(exc)):
                raise
            raise ReaderError(f"{self.path}: {exc}") from None

    # -- collector core tables ------------------------------------------------------
    def devices(self) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM devices ORDER BY device_id")

    def updates(self, device_id: str) -> list[dict[str, Any]]:
        """Update agent reports of a device, oldest first, ``detail`` decoded."""
        if not self.has("updates"):
            return []
        rows = self._all("SELECT * FROM updates WHERE device_id=? ORDER BY id", (device_id,))
        for r in rows:
            try:
                r["detail"] = json.loads(r["detail"])
            except ValueError:
                r["detail"] = {}
        return rows

    def vitals(self, device_id: str, since: float | None = None, until: float | None = None
               ) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM vitals WHERE device_id=?", [device_id]
        if since is not None:
            sql, args = sql + " AND t >= ?", args + [since]
        if until is not None:
            sql, args = sql + " AND t <= ?", args + [until]
        return self._all(sql + " ORDER BY seq", tuple(args))

    def missing(self, device_id: str) -> list[tuple[int, int]]:
        return [(r["first_seq"], r["last_seq"]) for r in
                self._all("SELECT first_seq, last_seq FROM missing WHERE device_id=? ORDER BY first_seq",
                          (device_id,))]

    # -- security agent tables (may be absent) -----------------------------------------
    def last_posture(self, device_id: str) -> dict[str, Any] | None:
        """The newest posture report (``report`` decoded), None when none or no table."""
        if not self.has("posture"):
            return None
        # newest as the device sealed them (seq): a report delayed in a queue or
        # redelivered after a reconnect does not replace a later one
        rows = self._all("SELECT * FROM posture WHERE device_id=? ORDER BY seq DESC, id DESC LIMIT 1",
                         (device_id,))
        if not rows:
            return None
        r = rows[0]
        try:
            r["report"] = json.loads(r["report"])
        except (TypeError, ValueError):
            r["report"] = {}
        return r

    def sec_events(self, device_id: str) -> list[dict[str, Any]]:
        """Security event-log entries of a device (kind, severity, t, received_at),
        oldest first; [] when there is no event table."""
        if not self.has("sec_events"):
            return []
        return self._all("SELECT n, kind, severity, t, received_at FROM sec_events WHERE device_id=? ORDER BY id",
                         (device_id,))

    def chain_state(self, device_id: str) -> str | None:
        """``ok`` / ``broken`` from ``events verify``, None when not reported (no
        event table, no entries, or no chain verifier in this installation)."""
        if not self.has("sec_events"):
            return None
        try:
            from host_tools.collector import eventchain  # type: ignore[attr-defined]
        except ImportError:
            return None
        n = self._all("SELECT COUNT(*) AS n FROM sec_events WHERE device_id=?", (device_id,))[0]["n"]
        if not n:
            return None
        return "ok" if eventchain.verify_device(self, device_id).ok else "broken"
