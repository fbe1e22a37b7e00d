"""Fleet deployment ingest: competing collectors on a 3-node RabbitMQ cluster, ratios
against a raw AMQP consumer draining the same queue in the same run.

For each drain N sealed records (D devices, real per-device keys and certificates)
are published over MQTT/TLS QoS 1 into the cluster while no consumer runs, so the
collector partitions (quorum queues ``medsentry.collector.<k>``) hold them; then one
consumer drains them:

  * anchor: a raw pika consumer (EXTERNAL login, the collector's prefetch window
    PREFETCH, ack multiple per BATCH_MAX) that does nothing with the bodies;
  * 1 collector: AmqpCollector (parse, AES-CCM verify/decrypt, sequence logic,
    one transaction per batch, ack after commit) on SQLite, then on PostgreSQL;
  * 2 collectors: two collector PROCESSES on PostgreSQL draining 2N together
    (``--shard 0/2`` and ``1/2``: each claims half of the partitions);
  * the ingest core alone (no AMQP): ``Ingestor.handle_batch`` on N records in
    batches of BATCH_MAX, on each database. The collector's cost per record is about
    the raw consumer's (pika receiving) plus the core's, so a collector reaches 0.5x
    of the raw consumer only when its core is as fast as pika's receive path.

The raw consumer and the two one-process collectors drain in ROUNDS rounds (raw first,
the two stores in turn first); each collector's ratio is taken against its own
round's raw consumer, and the median of the rounds is the figure, with each round's
beside it.

Every drain rate is taken in steady state, after the first WARMUP deliveries (one
window per partition): pika reads and parses what arrives while its basic_consume
calls wait for their answers, ~0.2-0.3 s, before the first callback, so a clock
started at the first message (rounds 1-12) ran late by a varying amount. It let the
raw consumer show up to 75,000 msg/s at 17 us of CPU per message, more than its one
thread can do (bench/fleet_sizing_rounds.md, round 13). That older figure is printed
too, on one line, for comparison with the earlier rounds.

Run: .venv/bin/python bench/bench_fleet.py [N [ROUNDS]]   (N default and least: 3x
the consumers' prefetch windows, 49,152; ROUNDS default 3; cluster start ~40 s, ~2 min
per round, ~8 min in all)
"""
from __future__ import annotations

import functools
import os
import signal
import statistics
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, NamedTuple

import cbor2
import paho.mqtt.client as mqtt

REPO = Path(__file__).resolve().parent.parent
# the throw-away fleet CA of this run (tests/conftest.py does the same)
os.environ.setdefault("MEDSENTRY_KEY_PASSPHRASE_FLEET_CA", "bench-fleet-ca-passphrase")
sys.path.insert(0, str(REPO))

from host_tools.broker.cluster import RabbitCluster  # noqa: E402
from host_tools.broker.plugin import BURST  # noqa: E402
from host_tools.broker.rabbit_config import COLLECTOR_QUEUES  # noqa: E402
from host_tools.collector import FleetDB  # noqa: E402
from host_tools.collector.amqp import BATCH_MAX, PREFETCH, AmqpCollector, amqp_parameters, tune_process  # noqa: E402
from host_tools.collector.cose import seal  # noqa: E402
from host_tools.collector.ingest import Ingestor  # noqa: E402
from host_tools.collector.pg_local import LocalPostgres  # noqa: E402
from host_tools.pki import FleetPKI  # noqa: E402

# enough devices that the consistent hash spreads them evenly over the partitions
DEVICES = [f"bench-{i}" for i in range(1, 33)]
#: Deliveries a consumer may hold before it acknowledges any: a drain's rate is
#: taken after these (module docstring).
WARMUP = PREFETCH * len(COLLECTOR_QUEUES)
#: Rounds of (raw consumer, SQLite collector, PostgreSQL collector), each ratio taken
#: against its own round's raw consumer and the median reported: on these shared
#: cores one drain moves by 30% or more from one minute to the next, the raw
#: consumer's too (27,000-49,000 msg/s within one run), so one round's ratio is
#: anywhere from 0.3 to 0.7 (bench/fleet_sizing_rounds.md, round 14).
ROUNDS = 3


class Rate(NamedTuple):
    """A drain's messages (or stored records) per second."""
    steady: float  # after the first WARMUP: the figure
    from_first: float  # from the first message: rounds 1-12's figure


def bench_pki(work: Path) -> FleetPKI:
    """A fleet CA in ``work`` with the bench's DEVICES issued."""
    pki = FleetPKI(work)
    pki.init()
    for dev in DEVICES:
        pki.issue(dev, "pump-v2")
    return pki


def sealed_record(tk, topic: str, seq: int) -> bytes:
    """One telemetry record sealed with the device's active key ``tk``."""
    return seal(cbor2.dumps({"t": 1764489600 + seq, "seq": seq, "hr": 70, "spo2": 97}),
                key=tk.key, base_iv=tk.base_iv, kid=tk.kid, seq=seq, topic=topic)


def publish(pki: FleetPKI, cluster: RabbitCluster, n: int, start: int) -> None:
    """n records spread over DEVICES, seq numbers from ``start``, QoS 1, all PUBACKed.
    All devices publish at once, record by record in turn, as a fleet does: each
    partition then holds its devices' records interleaved, and so does every batch a
    collector takes from it. (Published one device after the other, a batch held one
    or two devices' runs of records, each already in the order of the tables' keys.)"""
    per = n // len(DEVICES)
    clients = []
    for k, dev in enumerate(DEVICES):
        ident = pki.device_identity(dev)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev)
        c.tls_set(ca_certs=str(ident.ca), certfile=str(ident.cert), keyfile=str(ident.key),
                  cert_reqs=ssl.CERT_REQUIRED)
        c.max_inflight_messages_set(200)
        c.max_queued_messages_set(0)
        host, port = cluster.endpoints[k % len(cluster.endpoints)]
        c.connect(host, port)
        c.loop_start()
        topic = f"medsentry/{dev}/telemetry"
        clients.append((c, pki.device(dev).active_key(), topic))
    infos = [c.publish(topic, sealed_record(tk, topic, s), qos=1)
             for s in range(start, start + per) for c, tk, topic in clients]
    for i in infos:
        i.wait_for_publish(120)
    for c, _, _ in clients:
        c.disconnect()
        c.loop_stop()


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine (/proc/stat): every process counts,
    the broker nodes and PostgreSQL included."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def raw_drain(pki: FleetPKI, cluster: RabbitCluster, n: int) -> Rate:
    import pika

    conn = pika.BlockingConnection(amqp_parameters(pki.client_identity("collector"),
                                                   *cluster.amqp_endpoints[0]))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=PREFETCH)
    state = {"got": 0}
    at: dict[int, float] = {}  # message number -> when it was handed over

    def on_message(_ch, method, _p, _b) -> None:
        state["got"] += 1
        if state["got"] in (1, WARMUP, n):
            at[state["got"]] = time.perf_counter()
        if state["got"] % BATCH_MAX == 0 or state["got"] == n:
            ch.basic_ack(method.delivery_tag, multiple=True)

    tags = [ch.basic_consume(q, on_message) for q in COLLECTOR_QUEUES]
    idle = time.monotonic()
    while state["got"] < n and time.monotonic() - idle < 5:
        before = state["got"]
        conn.process_data_events(time_limit=0.05)
        if state["got"] != before:
            idle = time.monotonic()
    got = state["got"]
    for tag in tags:
        ch.basic_cancel(tag)
    conn.close()
    if got != n:
        raise SystemExit(f"raw consumer got {got}/{n}")
    return Rate((n - WARMUP) / (at[n] - at[WARMUP]), (n - 1) / (at[n] - at[1]))


def stored_rate(db: FleetDB, since: float, n: int) -> Rate:
    """Records stored since ``since`` per second, up to the last batch (received_at is
    the time a batch was handed over to be stored): from the batch that holds the
    WARMUP-th record (steady), and from the first batch. Process start-up is not
    counted, and neither is the last batch, stored after its time (counting it
    overstated the rate by its share of n, e.g. 3% for 512 of 16,000)."""
    count, first, last = db.conn.execute(
        "SELECT COUNT(*), MIN(received_at), MAX(received_at) FROM accepted WHERE received_at >= ?",
        (since,)).fetchone()
    if count != n:
        raise SystemExit(f"stored {count}/{n}")
    warm = db.conn.execute("SELECT received_at FROM accepted WHERE received_at >= ? ORDER BY received_at "
                           "LIMIT 1 OFFSET ?", (since, WARMUP - 1)).fetchone()[0]

    def per_second(start: float) -> float:
        stored = db.conn.execute("SELECT COUNT(*) FROM accepted WHERE received_at >= ? AND received_at < ?",
                                 (start, last)).fetchone()[0]
        return stored / max(1e-6, last - start)
    return Rate(per_second(warm), per_second(first))


def collector_drain(pki: FleetPKI, cluster: RabbitCluster, url: str, n: int,
                    threads: dict[str, float] | None = None) -> Rate:
    """records/s of one AmqpCollector draining n records; ``threads`` gets each of its
    threads' CPU per record in us (``receive``: pika and planning; ``store``)."""
    db = FleetDB(url)
    col = AmqpCollector(pki, db, "collector", cluster.amqp_endpoints)
    since = time.time()
    stats = col.run(duration=300, max_records=n)
    if stats.get("accepted", 0) != n:
        raise SystemExit(f"collector accepted {stats}")
    rate = stored_rate(db, since, n)
    db.close()
    if threads is not None:
        threads.update({k: v / n * 1e6 for k, v in col.thread_cpu.items()})
    return rate


def two_processes(work: Path, cluster: RabbitCluster, url: str, n: int
                  ) -> tuple[Rate, tuple[tuple[int, int], tuple[int, int]]]:
    """-> (records/s, machine CPU jiffies from the first stored record to the last:
    the processes' start-up is not counted)."""
    amqp = ",".join(f"{h}:{p}" for h, p in cluster.amqp_endpoints)
    db = FleetDB(url)
    base = db.counters().get("accepted", 0)
    since = time.time()
    procs = [subprocess.Popen([sys.executable, "-m", "host_tools.cli.main", "--workdir", str(work),
                               "collector", "--identity", name, "--amqp", amqp, "--db", url, "--shard", f"{i}/2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
             for i, name in enumerate(("collector", "collector-b"))]
    t0 = time.perf_counter()
    first = None
    try:
        while (done := db.counters().get("accepted", 0) - base) < n and time.perf_counter() - t0 < 300:
            if first is None and done:
                first = cpu_jiffies()
            time.sleep(0.05)
        last = cpu_jiffies()
        dt = time.perf_counter() - t0
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(30)
    got = db.counters().get("accepted", 0) - base
    if got != n or dt <= 0:
        raise SystemExit(f"two collectors stored {got}/{n}")
    rate = stored_rate(db, since, n)
    db.close()
    return rate, (first or last, last)


def ingest_core(pki: FleetPKI, url: str, n: int, start: int) -> float:
    """records/s of Ingestor.handle_batch alone (sealed here, stored into ``url``)."""
    keys = {dev: pki.device(dev).active_key() for dev in DEVICES}
    msgs = [(f"medsentry/{dev}/telemetry", sealed_record(keys[dev], f"medsentry/{dev}/telemetry", s))
            for s in range(start, start + n // len(DEVICES)) for dev in DEVICES]
    db = FleetDB(url)
    ing = Ingestor(pki, db)
    t0 = time.perf_counter()
    for i in range(0, len(msgs), BATCH_MAX):
        ing.handle_batch(msgs[i:i + BATCH_MAX])
    dt = time.perf_counter() - t0
    if ing.stats.get("accepted", 0) != len(msgs):
        raise SystemExit(f"ingest core accepted {ing.stats}")
    db.close()
    return len(msgs) / dt


class Drain(NamedTuple):
    """One consumer's drain in a round."""
    rate: Rate
    proc_us: float  # this process's CPU per record (the consumer's own threads)
    cores: float  # cores of the machine busy (every process: broker nodes, PostgreSQL)
    machine_us: float  # the machine's CPU per record
    threads: dict[str, float]  # a collector's CPU per record by thread


def measured(n: int, drain: Callable[[dict[str, float]], Rate]) -> Drain:
    """Run ``drain`` (given a dict for its threads' CPU) on n records, with the CPU
    it and the whole machine spent."""
    threads: dict[str, float] = {}
    before, c0 = cpu_jiffies(), time.process_time()
    rate = drain(threads)
    after, c1 = cpu_jiffies(), time.process_time()
    return Drain(rate, (c1 - c0) / n * 1e6, *machine_use(before, after, n), threads)


def machine_use(before: tuple[int, int], after: tuple[int, int], n: int) -> tuple[float, float]:
    """(cores of the machine busy, its CPU per record in us) between two
    ``cpu_jiffies`` readings over which n records were drained."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return (os.cpu_count() or 1) * busy / max(1, total), busy / os.sysconf("SC_CLK_TCK") / n * 1e6


def spread(values: list[float], fmt: str = ",.0f") -> str:
    """``median (each round's)`` of a figure."""
    return f"{statistics.median(values):{fmt}} ({', '.join(f'{v:{fmt}}' for v in values)})"


def main() -> None:
    # the consumers here (raw and collectors) run with the collector process's
    # interpreter settings (GC, switch interval), as `medsentry collector --amqp` does;
    # the switch interval does nothing to the raw consumer's one thread
    tune_process()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3 * PREFETCH * len(COLLECTOR_QUEUES)
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else ROUNDS
    n -= n % len(DEVICES)
    # Each consumer may hold a prefetch window per partition before it acks: the
    # rates are taken after those (WARMUP), over at least twice as many.
    if n < 3 * WARMUP:
        raise SystemExit(f"N={n}: use at least {3 * WARMUP} (3x the consumers' prefetch windows, "
                         f"{WARMUP} messages)")
    if rounds < 1:
        raise SystemExit(f"ROUNDS={rounds}: use at least 1")
    stores = ("sqlite", "postgresql")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pki = bench_pki(work)
        pki.issue_client("collector-b")
        # each device publishes 2n/32 at full speed: the per-client burst must hold it
        # (this measures the collectors, not the publish limit)
        burst = max(BURST, 2 * n // len(DEVICES) + 1)
        with LocalPostgres() as pg, RabbitCluster(pki, work / "cluster", nodes=3, rate_burst=burst) as cluster:
            urls = {"sqlite": f"sqlite:///{work}/fleet.db", "postgresql": pg.url}
            seq = 1
            drains: dict[str, list[Drain]] = {k: [] for k in ("raw", *stores)}
            for r in range(rounds):
                # the raw consumer first, then the two stores, in turn first
                for name in ("raw", *(stores if r % 2 == 0 else stores[::-1])):
                    publish(pki, cluster, n, seq)
                    seq += n // len(DEVICES)
                    if name == "raw":
                        drains[name].append(measured(n, lambda _threads: raw_drain(pki, cluster, n)))
                    else:
                        drains[name].append(measured(n, functools.partial(collector_drain, pki, cluster,
                                                                          urls[name], n)))
                    print(f"round {r + 1}/{rounds}, {name}: {drains[name][-1].rate.steady:,.0f}/s", flush=True)
            publish(pki, cluster, 2 * n, seq)
            two, (b0, b1) = two_processes(work, cluster, pg.url, 2 * n)
            seq += 2 * n // len(DEVICES)
            core = {name: ingest_core(pki, urls[name], n, seq) for name in stores}
    raw = [d.rate.steady for d in drains["raw"]]
    raw_median = statistics.median(raw)
    print(f"raw AMQP consumer: {spread(raw)} msg/s, median (each round's)")
    for k in stores:
        ratios = [d.rate.steady / a for d, a in zip(drains[k], raw)]
        print(f"collector {k}: {spread([d.rate.steady for d in drains[k]])} records/s; "
              f"ratio vs the round's raw consumer {spread(ratios, '.2f')}")
    print(f"collector 2 processes (PostgreSQL): {two.steady:,.0f} records/s; ratio vs the raw median "
          f"{two.steady / raw_median:.2f}; scale-out 1 -> 2: "
          f"{two.steady / statistics.median(d.rate.steady for d in drains['postgresql']):.2f}x")
    first_raw = [d.rate.from_first for d in drains["raw"]]
    print("from the first message instead (rounds 1-12's measure), medians: raw "
          f"{statistics.median(first_raw):,.0f} msg/s; " + "; ".join(
              f"{k} {statistics.median(d.rate.from_first for d in drains[k]):,.0f} "
              f"({statistics.median(d.rate.from_first / a for d, a in zip(drains[k], first_raw)):.2f}x)"
              for k in stores))
    for k, rate in core.items():
        print(f"ingest core alone (no AMQP), {k}: {rate:,.0f} records/s = {1e6 / rate:.0f} us/record; "
              f"the raw consumer receives in {1e6 / raw_median:.0f} us/msg, so 0.5x needs the core at most that")
    # One consumer process is bound by its interpreter lock: pika's thread and the
    # storer thread take turns, so what matters is their CPU per record together.
    print("consumer process CPU per record, us: " + "; ".join(
        f"{k} {spread([d.proc_us for d in ds], '.1f')}" for k, ds in drains.items()))
    raw_proc = statistics.median(d.proc_us for d in drains["raw"])
    for k in stores:
        print(f"collector {k}, CPU per record by thread (medians): receiving (pika, planning included) "
              f"{statistics.median(d.threads['receive'] for d in drains[k]):.1f} us, storing "
              f"{statistics.median(d.threads['store'] for d in drains[k]):.1f} us; "
              f"the raw consumer's one thread {raw_proc:.1f} us")
    # Why 2 processes cannot go faster on this machine: how many of its cores the
    # whole drain kept busy (collectors + 3 broker nodes + PostgreSQL), and the
    # machine's CPU per stored record (anchor: the raw consumer's per message).
    cores = os.cpu_count() or 1
    busy = {k: (statistics.median(d.cores for d in ds), statistics.median(d.machine_us for d in ds))
            for k, ds in drains.items()}
    busy["2 collectors"] = machine_use(b0, b1, 2 * n)
    for k, (c, us) in busy.items():
        median = " (median)" if k in drains else ""
        print(f"machine during {k}{median}: {c:.2f} of {cores} cores busy, {us:.0f} us CPU per record")
    for k in (*stores, "2 collectors"):
        print(f"CPU per record, {k}: {busy[k][1]:.0f} us; anchor raw consumer {busy['raw'][1]:.0f} us; "
              f"ratio {busy[k][1] / busy['raw'][1]:.1f}x")


if __name__ == "__main__":
    main()
