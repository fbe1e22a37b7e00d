"""What a running collector shows: a progress line and, with ``--follow``, each record.

``Progress.add(outcome)`` is called from the collector's network thread for every
message; ``line()`` is the one-line summary (records/s over the last few seconds,
accepted, devices seen, rejections by reason, duplicates) that the CLI shows as a
live line on a terminal or prints every few seconds otherwise. ``follow_line``
renders one decrypted record like ``mosquitto_sub -v``: the topic, a space, the
record as compact JSON. No terminal code here (the CLI draws).
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Callable

import cbor2

from .ingest import UNKNOWN_DEVICE
from .outcomes import REJECTIONS, Outcome
from .records import jsonable

#: records/s is measured over this many seconds (the newest samples).
RATE_WINDOW_S = 5.0


class Progress:
    """Counters of one collector run (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.devices: set[str] = set()
        self._samples: deque[tuple[float, int]] = deque([(self.started, 0)])

    def add(self, out: Outcome) -> None:
        with self.lock:
            self.counts[out.kind] = self.counts.get(out.kind, 0) + 1
            if out.device_id and out.device_id != UNKNOWN_DEVICE:
                self.devices.add(out.device_id)

    @property
    def accepted(self) -> int:
        return self.counts.get("accepted", 0)

    def rate(self) -> float:
        """Accepted records per second over the last RATE_WINDOW_S seconds."""
        now = self.clock()
        with self.lock:
            acc = self.accepted
            self._samples.append((now, acc))
            while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
                self._samples.popleft()
            t0, a0 = self._samples[0]
        return (acc - a0) / (now - t0) if now > t0 else 0.0

    def line(self) -> str:
        """``collector: 9.8 records/s, 120 accepted, 3 devices, 1 rejected (forged 1), 0 duplicates, up 12 s``"""
        rate = self.rate()
        with self.lock:
            rej = {k: v for k, v in sorted(self.counts.items()) if k in REJECTIONS and v}
            n_rej = sum(rej.values())
            why = f" ({', '.join(f'{k} {v}' for k, v in rej.items())})" if rej else ""
            return (f"collector: {rate:.1f} records/s, {self.accepted} accepted, {len(self.devices)} devices, "
                    f"{n_rej} rejected{why}, {self.counts.get('duplicate', 0)} duplicates, "
                    f"up {int(self.clock() - self.started)}s")


def follow_line(out: Outcome) -> str | None:
    """``medsentry/pump-1/telemetry {"hr":72,...}`` for an accepted record (the
    decrypted CBOR as compact JSON, bytes as hex) or a stored unsealed last will;
    None for anything the collector did not store."""
    if out.kind not in ("accepted", "status_unsealed") or out.plaintext is None:
        return None
    try:
        rec = jsonable(cbor2.loads(out.plaintext))
    except (cbor2.CBORDecodeError, ValueError, EOFError, OverflowError, RecursionError, TypeError):
        return None
    if out.kind == "status_unsealed" and isinstance(rec, dict):
        rec["sealed"] = False
    return f"{out.topic or out.device_id} {json.dumps(rec, separators=(',', ':'), sort_keys=True)}"
