"""How much faster could one collector process be if steps 1-5 (COSE parse, key
lookup, AES-CCM verify/decrypt, record checks) cost nothing under the interpreter
lock? The upper bound of a compiled hot path that releases the lock for a batch
(e.g. a Rust extension), measured before anyone writes one.

Each round publishes N records (bench_fleet.py's 32 devices, interleaved) and drains
them with:

  * the raw consumer (bench_fleet.raw_drain), the anchor of the round;
  * the collector as it is, on SQLite and on PostgreSQL;
  * the same collector whose ``Ingestor.plan_batch`` only looks its records up: each
    message's parse, decryption and record checks were done at publish time, and a
    batch's plan is a dictionary lookup, the ``Telemetry`` made from its values and
    the partial call per message, i.e. what a native batch call would still leave to
    Python. Sequencing and storing are the collector's own, unchanged.

The "bound" column is therefore more than any real offload can give.

Run: .venv/bin/python bench/bench_plan_offload_bound.py [N] [ROUNDS]
(defaults 49,152 and 3; ~4 min in all, cluster start included)
"""
from __future__ import annotations

import functools
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fleet import (  # noqa: E402
    BURST, COLLECTOR_QUEUES, DEVICES, PREFETCH, FleetPKI, LocalPostgres, RabbitCluster, bench_pki, collector_drain,
    WARMUP, publish, raw_drain, sealed_record, tune_process)

from host_tools.collector import cose  # noqa: E402
from host_tools.collector.ingest import Ingestor, PlannedBatch  # noqa: E402
from host_tools.collector.outcomes import Outcome  # noqa: E402
from host_tools.collector.records import Telemetry, parse_telemetry  # noqa: E402

#: payload -> (device, Sealed, plaintext, the Telemetry's values), filled at publish time
_DONE: dict[bytes, tuple[str, cose.Sealed, bytes, tuple]] = {}


def publish_planned(pki: FleetPKI, cluster: RabbitCluster, n: int, start: int) -> None:
    """bench_fleet.publish, with steps 1-5 of every record done here, beforehand."""
    for dev in DEVICES:
        tk = pki.device(dev).active_key()
        topic = f"medsentry/{dev}/telemetry"
        opener = cose.Opener(tk.key, tk.base_iv)
        for s in range(start, start + n // len(DEVICES)):
            payload = sealed_record(tk, topic, s)
            sealed = cose.parse(payload)
            plaintext = opener.open(sealed, topic)
            r = parse_telemetry(plaintext, sealed.seq)
            _DONE[payload] = (dev, sealed, plaintext, (r.seq, r.t, r.hr, r.spo2))
    publish(pki, cluster, n, start)


def plan_looked_up(self: Ingestor, messages: list[tuple[str, bytes]], now: float | None = None,
                   retained: Sequence[bool] = ()) -> PlannedBatch:
    """``Ingestor.plan_batch`` with steps 1-5 already done (see the module doc); the
    bench's records are telemetry, for which the retain flag changes nothing."""
    now = time.time() if now is None else now
    self.keys.refresh()
    store = self._sequence_and_store
    plans: list[Callable[[], Outcome]] = []
    for topic, payload in messages:
        dev, sealed, plaintext, values = _DONE[payload]
        plans.append(functools.partial(store, dev, topic, payload, sealed, Telemetry(*values), now, 0.0, plaintext))
    return PlannedBatch(messages, now, plans, tuple(retained))


def main() -> None:
    tune_process()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3 * PREFETCH * len(COLLECTOR_QUEUES)
    n -= n % len(DEVICES)
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    if n < 3 * WARMUP:  # rates are taken after each consumer's first window (bench_fleet)
        raise SystemExit(f"N={n}: use at least {3 * WARMUP}")
    real_plan = Ingestor.plan_batch
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pki = bench_pki(work)
        burst = max(BURST, 3 * rounds * n // len(DEVICES) + 1)
        with LocalPostgres() as pg, RabbitCluster(pki, work / "cluster", nodes=3, rate_burst=burst) as cluster:
            seq = 1
            for r in range(rounds):
                publish(pki, cluster, n, seq)
                seq += n // len(DEVICES)
                raw = raw_drain(pki, cluster, n).steady
                row = {"raw": raw}
                for db in ("sqlite", "postgresql"):
                    url = f"sqlite:///{work}/fleet.db" if db == "sqlite" else pg.url
                    for variant, plan in (("as is", real_plan), ("bound", plan_looked_up)):
                        (publish_planned if variant == "bound" else publish)(pki, cluster, n, seq)
                        seq += n // len(DEVICES)
                        Ingestor.plan_batch = plan  # type: ignore[method-assign]
                        try:
                            c0 = time.process_time()
                            rate = collector_drain(pki, cluster, url, n).steady
                            cpu = (time.process_time() - c0) / n * 1e6
                        finally:
                            Ingestor.plan_batch = real_plan  # type: ignore[method-assign]
                            _DONE.clear()
                        row[f"{db} {variant}"] = rate
                        print(f"round {r + 1}: {db} {variant}: {rate:,.0f} records/s ({rate / raw:.2f}x of raw "
                              f"{raw:,.0f} msg/s), process CPU {cpu:.1f} us per record", flush=True)
                rows.append(row)
    for db in ("sqlite", "postgresql"):
        gains = [row[f"{db} bound"] / row[f"{db} as is"] for row in rows]
        print(f"{db}: steps 1-5 free under the lock would store {min(gains):.2f}-{max(gains):.2f}x as many "
              f"records/s; ratio to raw as is {min(row[f'{db} as is'] / row['raw'] for row in rows):.2f}-"
              f"{max(row[f'{db} as is'] / row['raw'] for row in rows):.2f}, bound "
              f"{min(row[f'{db} bound'] / row['raw'] for row in rows):.2f}-"
              f"{max(row[f'{db} bound'] / row['raw'] for row in rows):.2f}")


if __name__ == "__main__":
    main()
