"""Issue 14 section 4, the collector's first hour, against the real CLI and a real
Mosquitto started by ``medsentry broker run``:

- the README order (broker, boards, then the collector) loses none of the first
  records: ``broker run`` opens every collector identity's persistent session;
- ``collector --follow`` prints each decrypted record like ``mosquitto_sub -v``
  and, when not on a terminal, a plain progress line every few seconds.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from host_tools.collector import Collector, CollectorConfig, FleetDB, tls_client
from host_tools.pki import FleetPKI
from tests.e2e.broker_fixtures import pycose_usable_key, record, seal_with

MEDSENTRY = [sys.executable, "-m", "host_tools.cli.main"]
T1 = "medsentry/pump-1/telemetry"
S1 = "medsentry/pump-1/status"


def _wait(pred, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"{what}: the process exited {proc.returncode}: {out} {err}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def broker_run(tmp_path):
    """`medsentry broker run` as a user starts it (a subprocess), on a fresh PKI."""
    work = tmp_path / "work"
    pki = FleetPKI(work)
    pki.init()
    pki.issue("pump-1", "pump-v2")
    proc = subprocess.Popen([*MEDSENTRY, "--workdir", str(work), "broker", "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    addr = work / "broker" / "address.json"
    try:
        _wait(addr.exists, 20, "broker/address.json", proc)
        d = json.loads(addr.read_text())
        yield work, pki, d["host"], d["port"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _device(pki, host, port):
    c = tls_client(pki.device_identity("pump-1"), "pump-1")
    c.connect(host, port)
    c.loop_start()
    return c


def _publish(client, topic, payload):
    info = client.publish(topic, payload, qos=1)
    info.wait_for_publish(5)
    assert info.is_published()


def test_readme_order_collector_started_after_the_boards_loses_no_record(broker_run):
    work, pki, host, port = broker_run
    tk = pycose_usable_key(pki, "pump-1")
    dev = _device(pki, host, port)
    try:
        # The board streams before any collector ever connected.
        for seq in (1, 2, 3):
            _publish(dev, T1, seal_with(tk, record(seq), topic=T1))
    finally:
        dev.disconnect()
        dev.loop_stop()
    db = FleetDB(work / "fleet.db")
    col = Collector(pki, db, CollectorConfig(host=host, port=port)).start()
    try:
        assert col.wait_for(lambda s: s["accepted"] == 3, 10.0), col.stats
        assert db.seqs("pump-1") == [1, 2, 3] and db.lost("pump-1") == 0
    finally:
        col.stop()
        db.close()


def test_collector_follow_prints_records_and_progress_lines(broker_run):
    work, pki, host, port = broker_run
    tk = pycose_usable_key(pki, "pump-1")
    proc = subprocess.Popen([*MEDSENTRY, "--workdir", str(work), "collector", "--follow",
                             "--progress-every", "0.3", "--max-records", "4", "--duration", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err_lines: list[str] = []
    reader = threading.Thread(target=lambda: err_lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        # not a terminal: a plain progress line every --progress-every seconds, before any record too
        _wait(lambda: any(ln.startswith("collector: 0.0 records/s, 0 accepted") for ln in err_lines),
              20, "a first progress line", proc)
        log = work / "broker" / "run" / "mosquitto.log"
        # the collector is subscribed when the broker logs its second subscription again
        _wait(lambda: log.exists() and log.read_text().count("collector 1 medsentry/+/status") >= 2,
              20, "the collector's subscription", proc)
        dev = _device(pki, host, port)
        try:
            for seq in (1, 2, 3):
                _publish(dev, T1, seal_with(tk, record(seq, hr=70 + seq), topic=T1))
            # a forged record: counted as a rejection, never printed
            bad = bytearray(seal_with(tk, record(4, hr=666), topic=T1))
            bad[-3] ^= 1
            _publish(dev, T1, bytes(bad))
            status = {"t": 1764489700, "seq": 5, "state": "online", "fw": "1.0.0", "queued": 0, "dropped": 0}
            _publish(dev, S1, seal_with(tk, status, topic=S1))
        finally:
            dev.disconnect()
            dev.loop_stop()
        out = proc.stdout.read()
        proc.wait(30)
        reader.join(5)
        err = "".join(err_lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (out, err)
    lines = out.splitlines()
    recs = [ln for ln in lines if ln.startswith("medsentry/")]
    assert [r.split(" ", 1)[0] for r in recs] == [T1, T1, T1, S1], out
    first = json.loads(recs[0].split(" ", 1)[1])
    assert first["seq"] == 1 and first["hr"] == 71 and " " not in recs[0].split(" ", 1)[1]
    assert json.loads(recs[3].split(" ", 1)[1])["state"] == "online"
    assert "666" not in out
    # the last progress line has the totals
    prog = [ln for ln in err.splitlines() if ln.startswith("collector: ") and "records/s" in ln]
    assert len(prog) >= 2, err
    assert "4 accepted" in prog[-1] and "1 devices" in prog[-1] and "1 rejected" in prog[-1], prog[-1]
    assert "\x1b[" not in err


def test_a_second_broker_run_in_the_same_work_dir_is_refused(broker_run):
    # Before: a second Mosquitto started on the first one's persistence file
    # and overwrote its address record.
    work, _pki, host, port = broker_run
    before = (work / "broker" / "address.json").read_text()
    r = subprocess.run([*MEDSENTRY, "--workdir", str(work), "broker", "run", "--duration", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "a broker already runs in this work dir" in r.stderr, r.stderr
    assert str(port) in r.stderr and "Traceback" not in r.stderr
    assert (work / "broker" / "address.json").read_text() == before
