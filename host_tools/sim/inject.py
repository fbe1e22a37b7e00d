"""Bytes put on a simulated board's UART line by the harness, timed against
the board's power-on and its boot stages (the attacker with a UART cable,
with sub-millisecond timing the test process could not get through the pty).

A plan is a list of steps, each a dict:
  on        "spawn" (the VM process starts) or a boot stage the ROM reports
            ("rom", "mount", "loader"); the step fires once, at the first such event
  at_ms     delay after that event (float, 0..60000)
  hex       the bytes to send, as hex (default "03": Ctrl-C)
  every_ms  with count > 1: resend every every_ms (a flood)
  count     how many times (1..20000)
  random    send `len(hex)/2` random bytes instead of `hex` each time
"""
from __future__ import annotations

import heapq
import os

MAX_STEPS = 64
MAX_SENDS = 20000
EVENTS = ("spawn", "rom", "mount", "loader")


class PlanError(ValueError):
    """An injection plan is malformed."""


def _check(step: object) -> dict:
    if not isinstance(step, dict):
        raise PlanError("each step must be an object")
    on = step.get("on", "spawn")
    if on not in EVENTS:
        raise PlanError(f"unknown event {on!r} (use one of {', '.join(EVENTS)})")
    at = float(step.get("at_ms", 0))
    every = float(step.get("every_ms", 0))
    count = int(step.get("count", 1))
    data = bytes.fromhex(str(step.get("hex", "03")))
    if not 0 <= at <= 60000 or not 0 <= every <= 60000 or not 1 <= count <= MAX_SENDS or not 1 <= len(data) <= 4096:
        raise PlanError("at_ms/every_ms must be 0..60000, count 1..20000, hex 1..4096 bytes")
    return {"on": on, "at_ms": at, "every_ms": every, "count": count, "data": data,
            "random": bool(step.get("random", False))}


class UartInjector:
    def __init__(self) -> None:
        self.plan: list[dict] = []
        self.due: list[tuple[float, int, bytes]] = []
        self.sent = 0
        self._seq = 0

    def arm(self, plan: object) -> int:
        if not isinstance(plan, list) or len(plan) > MAX_STEPS:
            raise PlanError(f"a plan is a list of at most {MAX_STEPS} steps")
        steps = [_check(s) for s in plan]
        if sum(s["count"] for s in steps) > MAX_SENDS:
            raise PlanError(f"at most {MAX_SENDS} sends per plan")
        self.plan, self.due, self.sent = steps, [], 0
        return len(steps)

    def on_event(self, name: str, now: float) -> None:
        keep = []
        for s in self.plan:
            if s["on"] != name:
                keep.append(s)
                continue
            for i in range(s["count"]):
                data = os.urandom(len(s["data"])) if s["random"] else s["data"]
                self._seq += 1
                heapq.heappush(self.due, (now + (s["at_ms"] + i * s["every_ms"]) / 1000, self._seq, data))
        self.plan = keep

    def timeout(self, now: float, default: float) -> float:
        if not self.due:
            return default
        return max(0.0, min(default, self.due[0][0] - now))

    def pop_due(self, now: float) -> bytes:
        out = b""
        while self.due and self.due[0][0] <= now:
            out += heapq.heappop(self.due)[2]
            self.sent += 1
        return out
