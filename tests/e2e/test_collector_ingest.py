"""The collector against a real Mosquitto, fed records sealed by pycose (independent).

Every rejection class from SEALING.md §6 is sent through the broker by the device
whose topic it uses (the ACL forbids anything else) and must be counted and never
stored; accepted records must come out of the database and the export unchanged.
"""
from __future__ import annotations

import json
import secrets
import socket
import threading
import time

import cbor2
import pytest
from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.collector import tls_client
from host_tools.collector.ingest import DUPLICATE_WINDOW
from tests.e2e.broker_fixtures import (
    pycose_seal,
    fleet,  # noqa: F401 - the pytest fixture
    pycose_usable_key,
    random_key_like,
    record,
    running_fleet,
    seal_with,
)

T1 = "medsentry/pump-1/telemetry"
S1 = "medsentry/pump-1/status"
T2 = "medsentry/pump-2/telemetry"
MARK = 666  # heart rate carried by every record that must be rejected


FLEET_DEVICES = [("pump-1", "pump-v2"), ("pump-2", "monitor-v1")]


def _total(col) -> int:
    return sum(col.stats.values())


def _send(fleet, col, client, topic, payload):
    """Publish and wait until the collector has processed it (any outcome)."""
    before = _total(col)
    fleet.publish(client, topic, payload)
    assert col.wait_for(lambda s: sum(s.values()) > before, 5.0), f"collector got nothing for {topic}"


def test_pycose_sealed_records_are_stored_and_exported(fleet):
    tk = pycose_usable_key(fleet.pki, "pump-1")
    col = fleet.collector()
    dev = fleet.client("pump-1")
    sent = [record(seq) for seq in range(1, 8)]
    for rec in sent:
        fleet.publish(dev, T1, seal_with(tk, rec, topic=T1))
    status = {"t": 1764489700, "seq": 8, "state": "online", "fw": "1.4.2", "queued": 0, "dropped": 3}
    fleet.publish(dev, S1, seal_with(tk, status, topic=S1))
    assert col.wait_for(lambda s: s["accepted"] == 8, 10.0), col.stats
    assert col.errors == []

    rows = col.db.vitals("pump-1")
    assert [r["seq"] for r in rows] == list(range(1, 8))
    for r, rec in zip(rows, sent):
        assert (r["t"], r["hr"], r["spo2"], r["bp_sys"], r["bp_dia"]) == \
            (rec["t"], rec["hr"], rec["spo2"], rec["bp_sys"], rec["bp_dia"])
        assert r["temp"] == pytest.approx(rec["temp"])
        assert r["pump_state"] == "running" and r["pump_infused"] == pytest.approx(rec["pump"]["infused"])
        assert r["pump_alarms"] == rec["pump"]["alarms"]
    dev_row = col.db.device("pump-1")
    assert (dev_row["status"], dev_row["fw"], dev_row["dropped"], dev_row["highest_seq"]) == ("online", "1.4.2", 3, 8)
    assert col.db.lost("pump-1") == 0

    col.flush()  # the CLI reads through its own connection: commit the open batch
    runner = CliRunner()
    res = runner.invoke(cli, ["--workdir", str(fleet.workdir), "telemetry", "export", "pump-1", "--format", "csv", "--raw"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines[0].startswith("seq,t,hr,spo2,bp_sys,bp_dia,temp,pump_state")
    assert len(lines) == 1 + 7
    assert lines[7].split(",")[0] == "7" and "OCCLUSION" in lines[7]
    out = fleet.workdir / "p1.json"
    res = runner.invoke(cli, ["--workdir", str(fleet.workdir), "telemetry", "export", "pump-1",
                              "--format", "json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert [r["hr"] for r in doc["records"]] == [r["hr"] for r in sent]
    assert doc["counters"] == {"accepted": 8} and doc["missing"] == []
    res = runner.invoke(cli, ["--workdir", str(fleet.workdir), "telemetry", "export", "pump-9"])
    assert res.exit_code != 0 and "no telemetry" in res.output


def test_bad_records_are_rejected_counted_and_never_stored(fleet):
    tk1 = pycose_usable_key(fleet.pki, "pump-1")
    # the old record replayed below is further back than any redelivery can be
    HIGH = DUPLICATE_WINDOW + 1000
    col = fleet.collector()
    p1, p2 = fleet.client("pump-1"), fleet.client("pump-2")

    first = seal_with(tk1, record(1), topic=T1)
    _send(fleet, col, p1, T1, first)
    _send(fleet, col, p1, T1, seal_with(tk1, record(HIGH), topic=T1))   # gap 2..HIGH-1

    bad = record(HIGH + 1, hr=MARK)
    good_bytes = bytearray(seal_with(tk1, bad, topic=T1))
    flipped = bytes(good_bytes[:-3]) + bytes([good_bytes[-3] ^ 0x01]) + bytes(good_bytes[-2:])
    other_key, other_iv = random_key_like(tk1)
    cases = [
        (p1, T1, flipped, "forged"),                                                 # bit flip
        (p1, T1, pycose_seal(bad, seq=HIGH + 1, topic=T1, key=other_key, base_iv=other_iv,
                             kid=tk1.kid), "forged"),                                # wrong key
        (p1, T1, seal_with(tk1, bad, topic=S1), "forged"),                           # sealed for status topic
        (p1, T1, seal_with(tk1, record(HIGH + 2, hr=MARK), topic=T2), "forged"),         # sealed for pump-2's topic
        (p2, T2, seal_with(tk1, record(HIGH + 3, hr=MARK), topic=T2), "wrong_device"),   # pump-1's key on pump-2
        (p1, T1, pycose_seal(bad, seq=HIGH + 1, topic=T1, key=tk1.key, base_iv=tk1.base_iv,
                             kid=secrets.token_bytes(8)), "unknown_kid"),
        (p1, T1, bytes(good_bytes[: len(good_bytes) // 2]), "malformed"),            # truncated
        (p1, T1, bytes(good_bytes[:-1]), "malformed"),                               # one byte short
        (p1, T1, cbor2.dumps(cbor2.loads(bytes(good_bytes)).value), "malformed"),    # untagged
        (p1, T1, b"\xff\x00garbage", "malformed"),
        (p1, T1, seal_with(tk1, dict(bad, seq=7), topic=T1, seq=HIGH + 1), "malformed"), # seq != PIV
        (p1, S1, cbor2.dumps({"state": "online", "hr": MARK}), "malformed"),         # unsealed, not the will
        (p1, T1, first, "replayed"),                                                 # old record, far back
        (p1, T1, seal_with(tk1, record(HIGH, hr=MARK), topic=T1), "replayed"),       # same seq, new content
    ]
    for client, topic, payload, _ in cases:
        _send(fleet, col, client, topic, payload)

    expected: dict[tuple[str, str], int] = {}
    for client, topic, _, reason in cases:
        dev = topic.split("/")[1]
        expected[(dev, reason)] = expected.get((dev, reason), 0) + 1
    for (dev, reason), n in expected.items():
        assert col.db.counters(dev).get(reason) == n, (dev, reason, col.db.counters(dev))
    assert col.db.counters("pump-1")["accepted"] == 2
    assert sum(col.stats[r] for r in ("forged", "wrong_device", "unknown_kid", "malformed", "replayed")) == len(cases)

    # nothing rejected was stored: only seq 1 and HIGH, no marker anywhere
    assert col.db.seqs("pump-1") == [1, HIGH]
    assert col.db.seqs("pump-2") == []
    assert all(r["hr"] != MARK for r in col.db.vitals("pump-1"))
    assert col.db.missing("pump-1") == [(2, HIGH - 1)]
    assert len(col.db.rejections()) == len(cases)
    summary = col.db.summary(sent=2)
    assert (summary["stored"], summary["lost"], summary["rejected"], summary["duplicates_dropped"]) == \
        (2, HIGH - 2, len(cases), 0)

    # the gap is still fillable by a genuine late record
    _send(fleet, col, p1, T1, seal_with(tk1, record(5), topic=T1))
    assert col.db.seqs("pump-1") == [1, 5, HIGH]
    assert col.db.missing("pump-1") == [(2, 4), (6, HIGH - 1)]


def test_duplicates_gaps_skips_and_key_rotation(fleet):
    tk = pycose_usable_key(fleet.pki, "pump-1")
    col = fleet.collector()
    p1 = fleet.client("pump-1")

    m1 = seal_with(tk, record(1), topic=T1)
    for _ in range(3):  # QoS 1 redeliveries look exactly like this
        _send(fleet, col, p1, T1, m1)
    assert (col.stats["accepted"], col.stats["duplicate"]) == (1, 2)

    for seq in (2, 5, 6):
        _send(fleet, col, p1, T1, seal_with(tk, record(seq), topic=T1))
    assert col.db.missing("pump-1") == [(3, 4)]
    _send(fleet, col, p1, T1, seal_with(tk, record(3), topic=T1))            # late arrival
    _send(fleet, col, p1, T1, seal_with(tk, record(10, skip=[7, 9]), topic=T1))  # reboot jump
    assert col.db.missing("pump-1") == [(4, 4)]
    kinds = [(g["kind"], g["first_seq"], g["last_seq"]) for g in col.db.gap_log("pump-1")]
    assert kinds == [("gap", 3, 4), ("filled", 3, 3), ("gap", 7, 9), ("skipped", 7, 9)]
    assert col.db.lost("pump-1") == 1

    # rotation: the new key works at once, the old one until retired
    new = fleet.pki.rotate_key("pump-1")
    while new.base_iv[0] == 0:  # pycose limitation, see pycose_usable_key
        new = fleet.pki.rotate_key("pump-1")
    _send(fleet, col, p1, T1, seal_with(new, record(11), topic=T1))
    _send(fleet, col, p1, T1, seal_with(tk, record(12), topic=T1))
    fleet.pki.retire_key("pump-1", tk.kid.hex())
    _send(fleet, col, p1, T1, seal_with(tk, record(13, hr=MARK), topic=T1))
    _send(fleet, col, p1, T1, seal_with(new, record(13), topic=T1))
    assert col.db.counters("pump-1")["retired_key"] == 1
    assert col.db.seqs("pump-1") == [1, 2, 3, 5, 6, 10, 11, 12, 13]
    assert all(r["hr"] != MARK for r in col.db.vitals("pump-1"))


def test_last_will_and_queued_delivery_while_collector_away(fleet):
    tk = pycose_usable_key(fleet.pki, "pump-1")
    col = fleet.collector()
    # a device that vanishes without DISCONNECT: the broker publishes its will
    dev = tls_client(fleet.identity("pump-1"), "pump-1-will")
    dev.will_set(S1, cbor2.dumps({"state": "offline"}), qos=1)  # as agent/telemetry does (not retained)
    dev.connect(fleet.broker.host, fleet.broker.port, keepalive=30)
    for _ in range(20):
        dev.loop(0.05)
        if dev.is_connected():
            break
    assert dev.is_connected()
    dev.socket().shutdown(socket.SHUT_RDWR)
    dev.socket().close()
    assert col.wait_for(lambda s: s["status_unsealed"] == 1, 5.0), col.stats
    assert col.db.device("pump-1")["status"] == "offline"
    assert col.db.status_log("pump-1")[-1]["sealed"] == 0

    # persistent session: records published while the collector is down arrive later
    col.stop()
    p1 = fleet.client("pump-1")
    for seq in (1, 2, 3):
        fleet.publish(p1, T1, seal_with(tk, record(seq), topic=T1))
    status = {"t": 1764489700, "seq": 4, "state": "online", "fw": "1.0.0", "queued": 0, "dropped": 0}
    fleet.publish(p1, S1, seal_with(tk, status, topic=S1))
    col2 = fleet.collector()
    assert col2.wait_for(lambda s: s["accepted"] == 4, 10.0), col2.stats
    assert col2.db.seqs("pump-1") == [1, 2, 3]
    # the broker keeps no retained will to replay to the new subscription
    assert col2.db.device("pump-1")["status"] == "online"
    assert col2.stats["status_unsealed"] == 0


def test_storage_failure_acknowledges_nothing_and_the_broker_redelivers(fleet):
    """Stored-before-acknowledged: when SQLite fails, the record is not PUBACKed,
    so the next collector session receives it again and stores it."""
    tk = pycose_usable_key(fleet.pki, "pump-1")
    col = fleet.collector()
    p1 = fleet.client("pump-1")
    _send(fleet, col, p1, T1, seal_with(tk, record(1), topic=T1))
    col.flush()
    col.db.conn.close()  # the database goes away under the running collector
    fleet.publish(p1, T1, seal_with(tk, record(2), topic=T1))
    for _ in range(250):
        if col.failed:
            break
        time.sleep(0.02)
    assert col.failed and col.errors
    col.stop()
    col2 = fleet.collector()
    assert col2.wait_for(lambda s: s["accepted"] == 1, 10.0), col2.stats
    assert col2.db.seqs("pump-1") == [1, 2]
    assert col2.stats["duplicate"] == 0


def test_collector_cli_runs_until_max_records(fleet):
    tk = pycose_usable_key(fleet.pki, "pump-1")
    result = {}

    def run():
        result["r"] = CliRunner().invoke(cli, [
            "--workdir", str(fleet.workdir), "collector", "--port", str(fleet.broker.port),
            "--max-records", "2", "--duration", "20"])

    th = threading.Thread(target=run)
    th.start()
    deadline = time.monotonic() + 10
    while "collector 1 medsentry/+/status" not in fleet.broker.log_text():
        if not th.is_alive():
            pytest.fail(f"collector CLI exited early: {result['r'].output} {result['r'].exception!r}")
        assert time.monotonic() < deadline, fleet.broker.log_text()
        time.sleep(0.02)
    p1 = fleet.client("pump-1")
    for seq in (1, 2):
        fleet.publish(p1, T1, seal_with(tk, record(seq), topic=T1))
    th.join(20)
    res = result["r"]
    assert res.exit_code == 0, res.output
    assert '"accepted": 2' in res.output
    stats = CliRunner().invoke(cli, ["--workdir", str(fleet.workdir), "telemetry", "stats", "--json"])
    assert stats.exit_code == 0 and json.loads(stats.output)["pump-1"]["accepted"] == 2


def test_broker_restart_mid_stream_loses_and_duplicates_nothing(tmp_path):
    """A paho device streams QoS 1 records while the broker (with persistence) is
    restarted: the collector ends with every record exactly once and no gap."""
    with running_fleet(tmp_path, devices=[("pump-1", "pump-v2")], persistence=True) as fleet:
        tk = pycose_usable_key(fleet.pki, "pump-1")
        col = fleet.collector()
        dev = tls_client(fleet.identity("pump-1"), "pump-1-stream", clean_session=False)
        dev.reconnect_delay_set(min_delay=1, max_delay=2)
        acked: set[int] = set()
        dev.on_publish = lambda c, u, mid, reason, props: acked.add(mid)
        dev.connect(fleet.broker.host, fleet.broker.port)
        dev.loop_start()
        try:
            n = 300
            infos = []
            for seq in range(1, n + 1):
                infos.append(dev.publish(T1, seal_with(tk, record(seq), topic=T1), qos=1))
                if seq == n // 2:
                    fleet.broker.restart()
                time.sleep(0.002)
            # publishes made while disconnected are queued by paho (rc NO_CONN) and
            # sent after the reconnect: wait for the collector, then for every PUBACK
            assert col.wait_for(lambda s: s["accepted"] == n, 20.0), col.stats
            deadline = time.monotonic() + 10
            while not all(i.mid in acked for i in infos) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert all(i.mid in acked for i in infos)
        finally:
            dev.disconnect()
            dev.loop_stop()
        assert col.db.seqs("pump-1") == list(range(1, n + 1))
        assert col.db.lost("pump-1") == 0
        assert col.stats["accepted"] == n and col.errors == []
