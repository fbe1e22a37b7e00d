"""A provisioned simulated board streams sealed vitals through a REAL Mosquitto
into the collector while the broker is SIGKILLed and restarted mid-stream, then
stopped for several minutes of the BOARD's clock: every record arrives exactly
once in the database, first arrivals in order, none lost.

How the board's clock is advanced: the board (its supervisor - the "hardware":
watchdog, reset line - and its MicroPython VM) runs under Debian's libfaketime
with ``FAKETIME="+0 x10"``: every clock the board reads (``time.time()``,
``ticks_ms``, the timeouts of ``sleep``/``poll``) runs ten times faster than the
host's. The board therefore samples at its configured 1 Hz of board time (10 per
host second), its MQTT keepalive, ack timeout, reconnect backoff and watchdog
all run on board time, and 30 host seconds without a broker are 300 seconds
(about 4 minutes measured, at least 3 asserted) offline for the board. The collector and Mosquitto run on host
time. The watchdog is given 30 board seconds (3 host seconds) in the board's
config so host scheduling hiccups under load cannot reset it.
"""
from __future__ import annotations

import time

import pytest

from tests.e2e.telemetry_board_fixtures import LIBFAKETIME, board_fleet, sequence_report

pytestmark = pytest.mark.skipif(LIBFAKETIME is None, reason="Debian faketime (libfaketime) not installed")

DEVICE = "pump-s1"
SPEED = 10
OFFLINE_HOST_S = 30  # = 300 s nominal of the board's clock (about 4 minutes measured)


def test_board_streams_through_broker_kill_and_minutes_offline_nothing_lost(tmp_path):
    with board_fleet(tmp_path, [(DEVICE, "pump-v2")]) as f:
        env = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": f"+0 x{SPEED}"}
        port = f.start_board(DEVICE, "pump-v2", env=env)
        f.boards.start_infusion(DEVICE, rate_ml_h=120.0, vtbi_ml=50.0)
        f.provision(DEVICE, port, config={"watchdog_ms": 30000, "telemetry": {"status_every_s": 30}}, reset=False)
        # A hard reset (the factory's power cycle) clears the watchdog the first,
        # unprovisioned boot armed at 5 s; the agent then arms the configured 30 s.
        f.boards.reset(DEVICE)
        f.boards.wait_for(DEVICE, lambda s: s.get("watchdog_ms") == 30000, 20, "watchdog armed at 30 s")
        f.wait_telemetry(DEVICE, lambda t: t.get("connected"), 30, "connected to the broker")

        # 1. streaming
        f.wait_stored(DEVICE, 40, 30)

        # 2. broker SIGKILLed mid-stream and restarted at once (same port)
        f.broker.kill()
        f.broker.start()
        before = len(f.db.seqs(DEVICE))
        f.wait_stored(DEVICE, before + 30, 40)

        # 3. broker away for minutes of the board's clock
        f.broker.stop()
        t_off = f.wait_telemetry(DEVICE, lambda t: not t.get("connected"), 20, "board sees the broker gone")
        up0 = f.boards.status(DEVICE)["device"]["uptime_s"]
        host0 = time.monotonic()
        time.sleep(OFFLINE_HOST_S)
        st = f.boards.status(DEVICE)["device"]
        t_on = st["telemetry"]
        board_offline_s = st["uptime_s"] - up0
        host_offline_s = time.monotonic() - host0
        assert board_offline_s >= 180, (board_offline_s, host_offline_s)  # minutes on the board's clock
        assert not t_on["connected"]
        assert t_on["queued"] >= t_off["queued"] + 120, (t_off, t_on)  # piled up in the flash queue
        assert t_on["dropped"] == 0 and t_on["errors"] == 0

        # 4. broker back: the backlog drains in order
        f.broker.start()
        sampled = t_on["sampled"]
        f.wait_telemetry(DEVICE, lambda t: t.get("connected") and t.get("queued", 99) <= 2 and
                         t.get("sampled", 0) > sampled + 20, 60, "backlog delivered")
        stored = f.wait_stored(DEVICE, sampled + 10, 20)
        f.collector.flush()

        rep = sequence_report(f.db, DEVICE)
        tel = rep["telemetry"]
        assert rep["missing"] == [], rep["missing"]  # nothing lost
        assert f.db.lost(DEVICE) == 0
        highest = max(rep["arrival"])
        # exactly once: every number 1..highest accepted once (telemetry or status; no reboot, no skip)
        assert sorted(rep["arrival"]) == list(range(1, highest + 1))
        assert rep["arrival"] == sorted(rep["arrival"]), "first arrivals out of order"
        assert f.db.seqs(DEVICE) == sorted(set(tel)) == tel
        assert stored >= sampled  # everything sampled before the broker came back is stored
        c = rep["counters"]
        for bad in ("replayed", "forged", "malformed", "unknown_kid", "wrong_device"):
            assert c.get(bad, 0) == 0, c
        vit = f.db.vitals(DEVICE)
        ts = [r["t"] for r in vit]
        assert ts == sorted(ts)
        # board-clock span of the stored records: minutes, in well under a minute of host time
        assert ts[-1] - ts[0] >= 240
        assert {r["pump_state"] for r in vit} <= {"running", "idle"} and "running" in {r["pump_state"] for r in vit}
        assert all(r["hr"] and r["spo2"] and r["temp"] for r in vit)
        states = [s["state"] for s in f.db.status_log(DEVICE)]
        assert states.count("online") >= 3  # one per (re)connect, sealed, plus periodic
