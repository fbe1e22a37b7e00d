"""Shared set-up for the telemetry-on-a-board tests (no tests here).

``board_fleet(tmp_path, devices)``: fleet PKI (``pki init`` + ``pki issue`` per
device), a REAL Mosquitto from host_tools.broker (persistence + autosave after
every change, so a SIGKILL loses as little as Mosquitto allows) on a free
loopback port, the collector (host library) on ``fleet.db``, and a Boards
harness; everything started is stopped at exit.
"""
from __future__ import annotations

import contextlib
import glob
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from unittest import mock

from host_tools.broker import Broker
from host_tools.collector import Collector, CollectorConfig, FleetDB
from host_tools.pki import FleetPKI
from host_tools.provision import BrokerAddress, provision
from host_tools.sim.boards import Boards

_LIBS = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
LIBFAKETIME = _LIBS[0] if _LIBS else None


def start_board(boards: Boards, name: str, model: str, env: dict[str, str] | None = None,
                heap: str | None = None) -> str:
    """Start a board and return its port; ``env`` reaches its supervisor and VM (e.g.
    libfaketime)."""
    with mock.patch.dict(os.environ, env or {}):
        return boards.start(name, model=model, heap=heap)["port"]


@dataclass
class BoardFleet:
    workdir: Path
    pki: FleetPKI
    broker: Broker
    db: FleetDB
    collector: Collector
    boards: Boards

    @property
    def address(self) -> BrokerAddress:
        return BrokerAddress(self.broker.host, self.broker.port)

    def start_board(self, name: str, model: str, env: dict[str, str] | None = None,
                    heap: str | None = None) -> str:
        return start_board(self.boards, name, model, env, heap)

    def provision(self, name: str, port: str, **kw) -> None:
        provision(self.pki, name, port, self.address, **kw)

    def telemetry(self, name: str) -> dict:
        return (self.boards.status(name).get("device") or {}).get("telemetry") or {}

    def wait_telemetry(self, name: str, pred: Callable[[dict], bool], timeout: float, what: str) -> dict:
        st = self.boards.wait_for(name, lambda s: pred((s.get("device") or {}).get("telemetry") or {}),
                                  timeout, what)
        return st["device"]["telemetry"]

    def results_after(self, name: str, n: int, k: int, timeout: float = 60.0) -> list[dict]:
        """The k signed-command results of device `name` stored after its first n."""
        deadline = time.monotonic() + timeout
        rs = self.db.command_results(name)[n:]
        while len(rs) < k and time.monotonic() < deadline:
            time.sleep(0.2)
            rs = self.db.command_results(name)[n:]
        assert len(rs) >= k, rs
        return rs[:k]

    def wait_stored(self, name: str, n: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = len(self.db.seqs(name))
            if got >= n:
                return got
            time.sleep(0.1)
        raise AssertionError(f"{name}: {len(self.db.seqs(name))} records stored, wanted {n}; "
                             f"board telemetry {self.telemetry(name)}; collector {self.collector.stats}")


@contextlib.contextmanager
def board_fleet(tmp_path: Path, devices: list[tuple[str, str]]) -> Iterator[BoardFleet]:
    workdir = Path(tmp_path) / "work"
    pki = FleetPKI(workdir)
    pki.init()
    for device_id, model in devices:
        pki.issue(device_id, model)
    # a second collector identity for independent subscribers (the broker makes
    # the certificate CN the client id: one connection per certificate)
    pki.issue_client("collector-b")
    broker = Broker(pki, workdir / "broker", persistence=True, autosave_on_changes=True)
    boards = Boards(workdir)
    with contextlib.ExitStack() as stack:
        broker.start()
        stack.callback(broker.stop)
        db = FleetDB(workdir / "fleet.db")
        stack.callback(db.close)
        col = Collector(pki, db, CollectorConfig(host=broker.host, port=broker.port))
        col.start()
        stack.callback(col.stop)

        def stop_boards() -> None:
            for name in boards.names():
                if boards.is_running(name):
                    boards.stop(name)

        stack.callback(stop_boards)
        yield BoardFleet(workdir, pki, broker, db, col, boards)


def sequence_report(db: FleetDB, device_id: str) -> dict:
    """Every accepted sequence number of a device (telemetry and status) in the
    order the collector first accepted them, plus what is missing."""
    with db.lock:
        rows = db.conn.execute("SELECT seq, received_at, topic FROM accepted WHERE device_id=? "
                               "ORDER BY received_at, seq", (device_id,)).fetchall()
        skipped = db.conn.execute("SELECT first_seq, last_seq FROM gaps WHERE device_id=? AND kind='skipped'",
                                  (device_id,)).fetchall()
    return {
        "arrival": [r[0] for r in rows],
        "telemetry": [r[0] for r in rows if r[2].endswith("/telemetry")],
        "skipped": [(a, b) for a, b in skipped],
        "missing": db.missing(device_id),
        "counters": db.counters(device_id),
    }
