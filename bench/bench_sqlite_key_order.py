"""SQLite: a batch's `accepted` and `vitals` rows inserted in arrival order against in
primary-key order, through the fleet database's own schema and insert path (WAL,
synchronous=FULL), in the same run: key order is the collector's own path
(FleetDB.deferred_writes), arrival order the same inserts without its sort.

A batch of a fleet holds many devices' records interleaved (here 1,024 records over
DEVICES devices, seq by seq: 32 as in bench_fleet, or e.g. 1,024, a record of each);
FleetDB._flush_deferred sorts them by (device_id, seq) first. Printed: thread CPU per
record for the inserts and the COMMIT, each way, and the ratio.

Run: .venv/bin/python bench/bench_sqlite_key_order.py [BATCHES] [DEVICES]   (default 96 32)
"""
from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from host_tools.collector import FleetDB  # noqa: E402
from host_tools.collector.db import ACCEPT_SQL, VITALS_SQL, _vitals_row  # noqa: E402
from host_tools.collector.records import Telemetry  # noqa: E402

BATCH = 1024
DEVICES = int(sys.argv[2]) if len(sys.argv) > 2 else 32
if not 1 <= DEVICES <= BATCH or BATCH % DEVICES:
    raise SystemExit(f"DEVICES={DEVICES}: use a divisor of {BATCH}")
KID = bytes(range(8))


def batch_rows(first_seq: int, now: float) -> tuple[list[tuple], list[tuple]]:
    """One batch's rows in arrival order: every device's next record in turn."""
    accepted, vitals = [], []
    for seq in range(first_seq, first_seq + BATCH // DEVICES):
        for d in range(DEVICES):
            dev = f"bench-{d + 1}"
            accepted.append((dev, seq, KID, f"medsentry/{dev}/telemetry",
                             hashlib.sha256(b"%d/%d" % (d, seq)).digest(), now))
            vitals.append(_vitals_row(dev, Telemetry(seq, 1764489600.0 + seq, 70, 97), now, ""))
    return accepted, vitals


def cpu_per_record(path: Path, batches: int, key_order: bool) -> float:
    db = FleetDB(path)
    cpu = 0.0
    for b in range(batches):
        accepted, vitals = batch_rows(1 + b * (BATCH // DEVICES), time.time())
        c0 = time.thread_time()
        db.conn.execute("BEGIN IMMEDIATE")
        if key_order:  # the collector's path: FleetDB._flush_deferred sorts, then inserts
            with db.deferred_writes():
                assert db._defer is not None
                db._defer[ACCEPT_SQL].extend(accepted)
                db._defer[VITALS_SQL].extend(vitals)
        else:  # the same inserts in arrival order
            db._sqlite_insert_rows(ACCEPT_SQL, accepted)
            db._sqlite_insert_rows(VITALS_SQL, vitals)
        db.conn.execute("COMMIT")
        cpu += time.thread_time() - c0
    db.close()
    return cpu / (batches * BATCH) * 1e6


def main() -> None:
    batches = int(sys.argv[1]) if len(sys.argv) > 1 else 96
    with tempfile.TemporaryDirectory() as tmp:
        res: dict[bool, list[float]] = {False: [], True: []}
        for r in range(2):  # alternated, each on a fresh database
            for key_order in (False, True):
                res[key_order].append(cpu_per_record(Path(tmp) / f"{r}-{key_order}.db", batches, key_order))
    arrival, keyed = min(res[False]), min(res[True])
    print(f"{batches} batches of {BATCH} records over {DEVICES} devices, inserts + COMMIT, thread CPU per record:")
    print(f"  arrival order {arrival:.1f} us, primary-key order {keyed:.1f} us; ratio {keyed / arrival:.2f}")


if __name__ == "__main__":
    main()
