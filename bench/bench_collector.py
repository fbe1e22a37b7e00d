"""Collector ingest rate against a plain `mosquitto_sub` draining the same stream.

Both subscribers hold persistent QoS 1 sessions on the same Mosquitto (mutual TLS;
the collector as `collector`, the anchor as `collector-bench`: the broker makes the
certificate CN the client id, so each needs its own certificate). N sealed records are published with paho while both
are away, so the broker queues the identical stream for each; then each drains
it alone (one after the other, so they do not share the two cores):

  * anchor: `mosquitto_sub -C N` (receives and discards);
  * figure: the collector (receive spool with manual PUBACK after its commit, then
    parse, AES-CCM verify/decrypt, replay/gap logic, SQLite commit per batch), with
    its per-device store rate off (one device sends everything here).

Run: .venv/bin/python bench/bench_collector.py [N]   (default 5000; a few seconds)
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cbor2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from host_tools.broker import Broker  # noqa: E402
from host_tools.collector import Collector, CollectorConfig, FleetDB, tls_client  # noqa: E402
from host_tools.collector.cose import seal  # noqa: E402
from host_tools.pki import FleetPKI  # noqa: E402

TOPIC = "medsentry/bench-1/telemetry"


def sample(seq: int) -> bytes:
    return cbor2.dumps({
        "t": 1764489600 + seq, "seq": seq, "hr": 60 + seq % 40, "spo2": 97, "bp_sys": 120,
        "bp_dia": 80, "temp": 36.7,
        "pump": {"state": "running", "rate": 25.0, "vtbi": 100.0, "infused": seq / 100, "alarms": []},
    })


def mosquitto_sub_cmd(pki: FleetPKI, broker: Broker, count: int | None) -> list[str]:
    ident = pki.client_identity("collector-bench")
    cmd = ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "--cafile", str(ident.ca),
           "--cert", str(ident.cert), "--key", str(ident.key), "-t", "medsentry/+/telemetry",
           "-q", "1", "-c", "-i", "bench-anchor"]
    if count is None:
        return cmd + ["-W", "1"]  # register the session, leave after 1 s
    return cmd + ["-C", str(count)]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pki = FleetPKI(work, "bench-fleet-ca-passphrase")
        pki.init()
        tk = pki.issue("bench-1", "pump-v2").active_key()
        pki.issue_client("collector-bench")
        t0 = time.perf_counter()
        payloads = [seal(sample(s), key=tk.key, base_iv=tk.base_iv, kid=tk.kid, seq=s, topic=TOPIC)
                    for s in range(1, n + 1)]
        seal_s = time.perf_counter() - t0
        plain = len(sample(n // 2))
        sealed = len(payloads[n // 2 - 1])

        # One device sends the whole stream: the broker's per-client limit
        # (host_tools/broker/ratelimit/) is off, or it would be measured.
        with Broker(pki, work / "broker", rate_limit=None) as broker:
            # 1. register both persistent sessions, then leave
            subprocess.run(mosquitto_sub_cmd(pki, broker, None), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=10)
            db = FleetDB(work / "fleet.db")
            # One device sends the whole stream: without store_rate=None the per-device
            # store rate (spool.RATE, the fairness limit) would be measured, not the
            # collector's capacity.
            cfg = CollectorConfig(host=broker.host, port=broker.port, store_rate=None)
            col = Collector(pki, db, cfg)
            col.start()
            col.stop()

            # 2. publish the stream while both are away
            pub = tls_client(pki.device_identity("bench-1"), "bench-pub")
            pub.max_inflight_messages_set(100)
            pub.max_queued_messages_set(0)
            pub.connect(broker.host, broker.port)
            pub.loop_start()
            t0 = time.perf_counter()
            infos = [pub.publish(TOPIC, p, qos=1) for p in payloads]
            for info in infos:
                info.wait_for_publish(30)
            pub_s = time.perf_counter() - t0
            pub.disconnect()
            pub.loop_stop()

            # 3. anchor: mosquitto_sub drains the queued stream
            t0 = time.perf_counter()
            proc = subprocess.run(mosquitto_sub_cmd(pki, broker, n), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, timeout=120)
            sub_s = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"mosquitto_sub failed: {proc.stderr.decode()}")

            # 4. figure: the collector drains the same stream
            col = Collector(pki, db, cfg)
            t0 = time.perf_counter()
            stats = col.run(duration=120, max_records=n)
            col_s = time.perf_counter() - t0
            db_rows = len(db.seqs("bench-1"))
            db.close()
        if stats.get("accepted") != n or db_rows != n:
            raise SystemExit(f"collector stored {db_rows}/{n}: {stats}")

    col_rate, sub_rate, pub_rate = n / col_s, n / sub_s, n / pub_s
    print(f"collector ingest: {col_rate:,.0f} records/s ({n} sealed records verified+stored); "
          f"anchor mosquitto_sub: {sub_rate:,.0f} msg/s; ratio {col_rate / sub_rate:.3f}")
    print(f"paho QoS1 publish into the broker: {pub_rate:,.0f} msg/s; anchor mosquitto_sub drain: "
          f"{sub_rate:,.0f} msg/s; ratio {pub_rate / sub_rate:.3f}")
    print(f"host sealing (cryptography AESCCM + cbor2): {n / seal_s:,.0f} records/s; anchor collector "
          f"ingest: {col_rate:,.0f} records/s; ratio {(n / seal_s) / col_rate:.2f}")
    print(f"sealed record size: {sealed} B; anchor plaintext CBOR: {plain} B; overhead "
          f"{sealed - plain} B, ratio {sealed / plain:.3f}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
