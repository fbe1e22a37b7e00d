"""Collector per-record cost against the number of holes a device leaves (issue 11 item 4).

A device key holder seals every other sequence number, so each accepted record
opens one more hole. Measured on the real Ingestor (AES-CCM verify, replay/gap
logic, one SQLite commit per record), all in this run:

  * anchor: per-record time of a device with no holes (sequential numbers);
  * figure: per-record time of the attacking device once it holds N holes,
    of another device's records meanwhile, and of late records filling holes.

Before the fix every record rewrote all of a device's holes (~11 ms at 10,000).
Run: .venv/bin/python bench/bench_collector_holes.py [N]   (default 10000 = the cap)
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import cbor2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from host_tools.collector import FleetDB, Ingestor  # noqa: E402
from host_tools.collector.cose import seal  # noqa: E402
from host_tools.pki import FleetPKI  # noqa: E402

BATCH = 500


def topic(dev: str) -> str:
    return f"medsentry/{dev}/telemetry"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    with tempfile.TemporaryDirectory() as tmp:
        pki = FleetPKI(tmp)
        pki.init()
        keys = {d: pki.issue(d, "pump-v2").active_key() for d in ("anchor-1", "holes-1", "other-1")}
        db = FleetDB(Path(tmp) / "fleet.db")
        ing = Ingestor(pki, db)

        def sealed(dev: str, seq: int) -> bytes:
            tk = keys[dev]
            rec = {"t": 1764489600 + seq, "seq": seq, "hr": 70, "spo2": 97}
            return seal(cbor2.dumps(rec), key=tk.key, base_iv=tk.base_iv, kid=tk.kid, seq=seq, topic=topic(dev))

        def per_record(dev: str, seqs: list[int]) -> float:
            msgs = [sealed(dev, s) for s in seqs]
            samples = []
            for i in range(0, len(msgs), 50):
                t0 = time.perf_counter()
                for m in msgs[i:i + 50]:
                    if ing.handle(topic(dev), m).kind != "accepted":
                        raise SystemExit(f"{dev}: not accepted")
                samples.append((time.perf_counter() - t0) / len(msgs[i:i + 50]))
            return statistics.median(samples)

        anchor = per_record("anchor-1", list(range(1, BATCH + 1)))
        for s in range(1, n + 1):  # the attack: every other number
            ing.handle(topic("holes-1"), sealed("holes-1", 2 * s - 1))
        holes = len(db.missing("holes-1"))
        attacker = per_record("holes-1", [2 * s - 1 for s in range(n + 1, n + BATCH + 1)])
        other = per_record("other-1", list(range(1, BATCH + 1)))
        fills = per_record("holes-1", [2 * s for s in range(n // 2, n // 2 + BATCH)])
        db.close()
    print(f"anchor: {anchor * 1e3:.3f} ms/record (device without holes)")
    for name, v in (("attacking device at %d holes" % holes, attacker),
                    ("other device meanwhile", other), ("late records filling holes", fills)):
        print(f"{name}: {v * 1e3:.3f} ms/record; anchor {anchor * 1e3:.3f} ms/record; ratio {v / anchor:.2f}")


if __name__ == "__main__":
    main()
