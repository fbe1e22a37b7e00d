"""The collector's receive spool (host_tools/collector/spool.py): devices served in
turn, a per-device store rate, a per-device quota with counted shedding, and what a
crash leaves (issue 11, "one device's behaviour never delays another's records")."""
from __future__ import annotations

import time

from host_tools.collector import spool as sp
from host_tools.collector.spool import Spool


def topic(dev: str) -> str:
    return f"medsentry/{dev}/telemetry"


def fill(s: Spool, dev: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        assert s.add(topic(dev), b"%d" % i, False)
    s.commit()


def test_a_device_with_a_backlog_does_not_delay_another(tmp_path):
    s = Spool(tmp_path / "s.db", rate=None)
    fill(s, "flood", 5000)
    fill(s, "honest", 3)
    rows = s.take(0.1)
    honest = [i for i, r in enumerate(rows) if r[1] == topic("honest")]
    assert len(honest) == 3 and honest[-1] < 2 * sp.ROUND, honest  # in the first round
    flood = [int(r[2]) for r in rows if r[1] == topic("flood")]
    assert flood == sorted(flood) and flood[0] == 0  # each device in its own order


def test_store_rate_per_device(tmp_path):
    s = Spool(tmp_path / "s.db")
    fill(s, "flood", 5000)
    got = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.5:
        got += len(s.take(0.05))
    # the burst, then RATE per second
    assert sp.BURST <= got <= sp.BURST + sp.RATE * 0.5 + sp.ROUND, got
    fill(s, "honest", 5)
    assert [r[1] for r in s.take(0.05)].count(topic("honest")) == 5  # its own budget


def test_quota_sheds_only_the_device_over_it(tmp_path):
    s = Spool(tmp_path / "s.db", quota=100)
    for i in range(150):
        s.add(topic("flood"), b"x", False)
    s.commit()
    assert s.take_shed() == {"flood": 50}
    assert s.add(topic("honest"), b"y", False)
    assert s.take_shed() == {}


def test_what_a_crash_leaves(tmp_path):
    path = tmp_path / "s.db"
    s = Spool(path, rate=None)
    fill(s, "a", 10)
    rows = s.take(0.1)
    s.done(rows[:4])              # the fleet database committed these
    s.add(topic("a"), b"late", False)  # spooled, not committed: never acknowledged
    s.conn.close()                # crash
    again = Spool(path, rate=None)
    assert [r[2] for r in again.take(0.1)] == [b"%d" % i for i in range(4, 10)]
