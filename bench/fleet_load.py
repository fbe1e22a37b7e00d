"""Simulated fleet: D devices at R Hz for S seconds into the 3-node RabbitMQ cluster,
drained by two collector processes into PostgreSQL. Host-side, loopback only.

Every simulated device has its own fleet identity made by the real PKI (EC P-256
certificate, AES-CCM telemetry key), its own mutual-TLS MQTT connection (the
device's codec, agent/telemetry/mqtt_codec.py, over asyncio), and seals every
record in the device's format (COSE_Encrypt0, seq 1, 2, ...). Bounded: D
connections opened at most 200 at a time, one QoS 1 record in flight per device
(a record still unacknowledged at the next tick waits: counted as "late").

Reported: connect time, sustained publish rate (PUBACKed records / S), collector
storage rate, end-to-end latency send -> stored (p50/p99, from the database's
received_at), loss (PUBACKed but never stored), duplicates, and the CPU each part
used from the first tick to the last record stored (/proc: the broker nodes, the
collectors, PostgreSQL, this load generator), per 1,000 records: what sizes a
broker node and a collector.

Run: .venv/bin/python bench/fleet_load.py [DEVICES] [SECONDS] [HZ] [SCHEDULERS]
     (default 10000 60 1 1; SCHEDULERS = Erlang schedulers per broker node, the
     tests' 1 or e.g. the machine's core count)
"""
from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cbor2

REPO = Path(__file__).resolve().parent.parent
# the throw-away fleet CA of this run (tests/conftest.py does the same)
os.environ.setdefault("MEDSENTRY_KEY_PASSPHRASE_FLEET_CA", "bench-fleet-ca-passphrase")
sys.path.insert(0, str(REPO))

from agent.telemetry import mqtt_codec as codec  # noqa: E402
from host_tools.broker.cluster import RabbitCluster  # noqa: E402
from host_tools.collector import FleetDB  # noqa: E402
from host_tools.collector.cose import seal  # noqa: E402
from host_tools.collector.pg_local import LocalPostgres  # noqa: E402
from host_tools.pki import FleetPKI  # noqa: E402

CONNECT_CONCURRENCY = 200


class SimDevice:
    def __init__(self, pki: FleetPKI, dev: str, endpoint: tuple[str, int]) -> None:
        rec = pki.device(dev)
        self.tk = rec.active_key()
        ident = pki.device_identity(dev)
        self.ctx = ssl.create_default_context(cafile=str(ident.ca))
        self.ctx.load_cert_chain(str(ident.cert), str(ident.key))
        self.dev = dev
        self.topic = f"medsentry/{dev}/telemetry"
        self.endpoint = endpoint
        self.sent: dict[int, float] = {}
        self.acked = 0
        self.late = 0
        self.seq = 0
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.inflight: asyncio.Future | None = None

    async def connect(self) -> None:
        host, port = self.endpoint
        self.reader, self.writer = await asyncio.open_connection(host, port, ssl=self.ctx,
                                                                 server_hostname=host)
        self.writer.write(codec.encode_connect(self.dev, keepalive=120, clean_session=True))
        await self.writer.drain()
        head = await self.reader.readexactly(4)
        if head[0] >> 4 != codec.CONNACK or head[3] != 0:
            raise ConnectionError(f"{self.dev}: CONNACK {head.hex()}")
        asyncio.get_running_loop().create_task(self._reader())

    async def _reader(self) -> None:
        assert self.reader is not None
        try:
            while True:
                b = await self.reader.readexactly(4)
                if b[0] >> 4 == codec.PUBACK:
                    pid = int.from_bytes(b[2:4], "big")
                    self.acked += 1
                    if self.inflight is not None and not self.inflight.done():
                        self.inflight.set_result(pid)
        except (asyncio.IncompleteReadError, OSError):
            pass

    async def tick(self) -> None:
        if self.inflight is not None and not self.inflight.done():
            self.late += 1
            return
        self.seq += 1
        s = self.seq
        payload = seal(cbor2.dumps({"t": int(time.time()), "seq": s, "hr": 70, "spo2": 97}),
                       key=self.tk.key, base_iv=self.tk.base_iv, kid=self.tk.kid, seq=s, topic=self.topic)
        self.inflight = asyncio.get_running_loop().create_future()
        self.sent[s] = time.time()
        assert self.writer is not None
        self.writer.write(codec.encode_publish(self.topic, payload, 1, False, False, (s % 65535) + 1))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def cpu_by_part(groups: dict[str, set[int]]) -> dict[str, float]:
    """CPU seconds (user + system) of the live processes, by part: a process whose
    session id is in ``groups[name]``, PostgreSQL's by name, this process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = dict.fromkeys([*groups, "postgresql", "load generator", "other"], 0.0)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            raw = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        f = raw[raw.rindex(")") + 2:].split()
        sid, cpu = int(f[3]), (int(f[11]) + int(f[12])) / tick
        part = next((g for g, sids in groups.items() if sid in sids), None)
        if part is None:
            part = ("load generator" if int(d) == os.getpid()
                    else "postgresql" if comm.startswith("postgres") else "other")
        out[part] += cpu
    return out


async def drive(devs: list[SimDevice], seconds: float, hz: float, on_start=lambda: None) -> dict[str, float]:
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def conn(d: SimDevice) -> None:
        async with sem:
            for attempt in range(5):
                try:
                    await d.connect()
                    return
                except (OSError, ConnectionError, asyncio.IncompleteReadError):
                    await asyncio.sleep(0.5 * (attempt + 1))
            raise ConnectionError(f"{d.dev} could not connect")

    t0 = time.perf_counter()
    await asyncio.gather(*(conn(d) for d in devs))
    connect_s = time.perf_counter() - t0
    on_start()
    period = 1.0 / hz
    start = time.perf_counter()
    n = len(devs)
    # each device ticks at its own phase within the period
    ticks = int(seconds * hz)
    for k in range(ticks):
        base = start + k * period
        for i, d in enumerate(devs):
            due = base + period * i / n
            delay = due - time.perf_counter()
            if delay > 0.002:
                await asyncio.sleep(delay)
            await d.tick()
        for d in devs[::max(1, n // 50)]:
            if d.writer is not None:
                await d.writer.drain()
    publish_s = time.perf_counter() - start
    # wait for outstanding PUBACKs (bounded)
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline and any(d.inflight is not None and not d.inflight.done()
                                                 for d in devs):
        await asyncio.sleep(0.1)
    for d in devs:
        d.close()
    return {"connect_s": connect_s, "publish_s": publish_s}


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    hz = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    schedulers = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    # The PKI fsyncs every key it writes (~30 ms per identity on disk): issue the
    # throw-away fleet on tmpfs when there is one.
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        work = Path(tmp)
        pki = FleetPKI(work)
        pki.init()
        t0 = time.perf_counter()
        kids: set[bytes] = set()
        ids = [f"sim-{i:05d}" for i in range(n)]
        for dev in ids:
            pki.issue(dev, "pump-v2", taken_kids=kids)
        pki.issue_client("collector-b")
        print(f"issued {n} device identities in {time.perf_counter() - t0:.1f}s", flush=True)
        with LocalPostgres() as pg, RabbitCluster(pki, work / "cluster", nodes=3,
                                                          schedulers=schedulers) as cluster:
            FleetDB(pg.url).close()
            amqp = ",".join(f"{h}:{p}" for h, p in cluster.amqp_endpoints)
            procs = [subprocess.Popen([sys.executable, "-m", "host_tools.cli.main", "--workdir", str(work),
                                       "collector", "--identity", name, "--amqp", amqp, "--db", pg.url,
                                       "--shard", f"{i}/2"],
                                      stdout=(work / f"{name}.out").open("wb"), stderr=subprocess.STDOUT,
                                      start_new_session=True) for i, name in enumerate(("collector", "collector-b"))]
            devs = [SimDevice(pki, d, cluster.endpoints[i % 3]) for i, d in enumerate(ids)]
            groups = {f"broker node {i + 1}": {p.pid} for i, p in enumerate(cluster.procs) if p is not None}
            groups["collectors"] = {p.pid for p in procs}
            cpu: dict[str, dict[str, float]] = {}
            try:
                times = asyncio.run(drive(devs, seconds, hz,
                                          lambda: cpu.setdefault("start", cpu_by_part(groups))))
                acked = sum(d.acked for d in devs)
                db = FleetDB(pg.url)
                drain_deadline = time.perf_counter() + 300
                while time.perf_counter() < drain_deadline and db.counters().get("accepted", 0) < acked:
                    time.sleep(0.5)
                cpu["end"] = cpu_by_part(groups)
                rows = db.conn.execute("SELECT device_id, seq, received_at FROM accepted").fetchall()
                counters = db.counters()
                db.close()
            finally:
                for p in procs:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(30)
                for name in ("collector", "collector-b"):  # stats, reconnects and stalls
                    print(f"{name}: " + (work / f"{name}.out").read_text().strip().replace("\n", " | "))
    by_dev = {d.dev: d for d in devs}
    lat = [r[2] - by_dev[r[0]].sent[r[1]] for r in rows if r[1] in by_dev[r[0]].sent]
    sent = sum(len(d.sent) for d in devs)
    stored = len(rows)
    late = sum(d.late for d in devs)
    print(f"devices {n}, {hz} Hz, {seconds:.0f}s, {schedulers} scheduler(s) per broker node; "
          f"connect {times['connect_s']:.1f}s")
    print(f"sent {sent}, PUBACKed {acked}, stored {stored}, lost (acked, not stored) {max(0, acked - stored)}, "
          f"late ticks (previous record not yet acked) {late}, duplicates {counters.get('duplicate', 0)}")
    print(f"sustained publish rate {acked / times['publish_s']:,.0f} records/s (target {n * hz:,.0f}); "
          f"end-to-end latency p50 {percentile(lat, 0.5) * 1000:.0f} ms, p99 {percentile(lat, 0.99) * 1000:.0f} ms")
    span = max(rows, key=lambda r: r[2])[2] - min(by_dev[r[0]].sent[r[1]] for r in rows) if rows else 0.0
    print(f"CPU from the first tick to the last record stored ({span:.0f} s, {os.cpu_count()} cores), "
          f"per 1,000 stored records:")
    for part in cpu["end"]:
        used = cpu["end"][part] - cpu["start"].get(part, 0.0)
        print(f"  {part:15s} {used:7.1f} s  {used / max(1, stored) * 1000:6.3f} s/1k  "
              f"{used / max(1e-9, span):.2f} cores")


if __name__ == "__main__":
    main()
