"""Per-device sequence state: highest accepted number and the open holes below it.

Every operation costs O(log holes) (bisect; list inserts are memmoves) and
touches at most a few database rows, so a device that seals every other number
cannot make each record cost more (issue 11 item 4). Limits that keep a key
holder from inventing or hiding loss (SEALING.md section 6):

* a jump above the highest accepted number must be plausible: at most
  ``slack + MAX_RATE * elapsed`` numbers, ``elapsed`` being the collector's
  seconds since the device's last accepted record (or since its first telemetry
  key was issued). ``slack`` is a per-device budget of ``JUMP_SLACK`` numbers that
  a jump beyond ``MAX_RATE * elapsed`` spends and that refills over
  ``SLACK_REFILL_S``: back-to-back records cannot each claim the whole slack (they
  did: 200 records invented 26 million lost numbers). Otherwise the record is
  rejected (``implausible_seq``). The budget lives in memory: a collector restart
  gives every device its full slack once more;
* a ``skip`` may only cover numbers of the jump its own record makes (above the
  previous highest), at most ``MAX_SKIP`` of them; a wider one is refused and the
  numbers stay missing;
* at most ``MAX_MISSING_RANGES`` holes per device; beyond, the oldest hole is
  closed as ``expired``: no longer fillable, still counted as lost.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right

MAX_MISSING_RANGES = 10000
#: Records per second no device can exceed (the agent samples at 1 Hz by default).
MAX_RATE = 100
#: Jump allowed beyond the rate (reservation blocks, clock skew, a restored
#: database): a budget per device, spent by jumps, refilled over SLACK_REFILL_S.
JUMP_SLACK = 1 << 17
SLACK_REFILL_S = 3600.0
#: Widest ``skip`` believed: the device reserves sequence numbers in blocks of 64
#: (agent/telemetry/seqstore.py); a block must stay at or below this.
MAX_SKIP = 1024

Range = tuple[int, int]


class SeqState:
    """Highest accepted number, sorted disjoint inclusive holes, last accept time."""

    __slots__ = ("highest", "starts", "ends", "last_at", "slack")

    def __init__(self, highest: int | None = None, missing: list[list[int]] | None = None,
                 last_at: float | None = None) -> None:
        self.highest = highest
        ranges = sorted((int(a), int(b)) for a, b in (missing or []))
        self.starts = [a for a, _ in ranges]
        self.ends = [b for _, b in ranges]
        self.last_at = last_at
        self.slack = float(JUMP_SLACK)  # jump budget left (refilled by time)

    @property
    def missing(self) -> list[list[int]]:
        return [[a, b] for a, b in zip(self.starts, self.ends)]

    def hole_of(self, seq: int) -> int | None:
        """Index of the hole containing ``seq``, or None."""
        i = bisect_right(self.starts, seq) - 1
        return i if i >= 0 and self.ends[i] >= seq else None

    def _elapsed_and_slack(self, now: float, since: float) -> tuple[float, float]:
        ref = self.last_at if self.last_at is not None else since
        elapsed = max(0.0, now - ref)
        return elapsed, min(float(JUMP_SLACK), self.slack + JUMP_SLACK * elapsed / SLACK_REFILL_S)

    def allowed_jump(self, now: float, since: float) -> int:
        """How far above the highest number the next record may plausibly be."""
        elapsed, slack = self._elapsed_and_slack(now, since)
        return max(1, int(slack + MAX_RATE * elapsed))

    def spend_jump(self, jump: int, now: float, since: float) -> None:
        """An accepted record ``jump`` above the highest: what it took beyond the
        rate comes out of the slack (call before ``last_at`` moves to ``now``)."""
        elapsed, slack = self._elapsed_and_slack(now, since)
        self.slack = max(0.0, slack - max(0.0, jump - 1 - MAX_RATE * elapsed))

    def next_in_order(self, now: float) -> None:
        """Apply an accepted record numbered ``highest + 1`` (the common case): no
        hole opens or closes; a jump of one is within the rate, so it spends no
        slack and the budget only refills (``spend_jump(1, ...)``). Needs a
        ``last_at`` (the device has an accepted record)."""
        assert self.highest is not None and self.last_at is not None
        elapsed = now - self.last_at
        if elapsed > 0:
            self.slack = min(float(JUMP_SLACK), self.slack + JUMP_SLACK * elapsed / SLACK_REFILL_S)
        self.last_at = now
        self.highest += 1

    # -- planning (no mutation) ---------------------------------------------------
    def plan_jump(self, seq: int, skip: Range | None) -> tuple[list[Range], list[Range], str]:
        """For ``seq`` above the highest: (holes to add, numbers skipped, note).
        ``note`` is ``"skip_refused"`` when a declared skip was not believed."""
        lo_gap = (self.highest or 0) + 1
        if seq <= lo_gap:
            return [], [], "skip_refused" if skip else ""
        gap = (lo_gap, seq - 1)
        if skip is None:
            return [gap], [], ""
        lo, hi = max(skip[0], gap[0]), min(skip[1], gap[1])
        if skip[1] - skip[0] + 1 > MAX_SKIP or lo > hi:
            return [gap], [], "skip_refused"
        holes = [r for r in ((gap[0], lo - 1), (hi + 1, gap[1])) if r[0] <= r[1]]
        return holes, [(lo, hi)], ""

    def plan_expiry(self, adding: int) -> list[Range]:
        """Oldest holes to close so that at most MAX_MISSING_RANGES stay open."""
        n = max(0, len(self.starts) + adding - MAX_MISSING_RANGES)
        return list(zip(self.starts[:n], self.ends[:n]))

    # -- mutation (after the database transaction committed) ----------------------
    def add(self, a: int, b: int) -> None:
        i = bisect_left(self.starts, a)
        self.starts.insert(i, a)
        self.ends.insert(i, b)

    def delete(self, a: int) -> None:
        i = bisect_left(self.starts, a)
        if i < len(self.starts) and self.starts[i] == a:
            del self.starts[i]
            del self.ends[i]

    def fill(self, i: int, seq: int) -> tuple[Range, list[Range]]:
        """Plan the removal of ``seq`` from hole ``i``: (hole, what replaces it)."""
        a, b = self.starts[i], self.ends[i]
        return (a, b), [r for r in ((a, seq - 1), (seq + 1, b)) if r[0] <= r[1]]


def apply(st: SeqState, deleted: list[Range], added: list[Range]) -> None:
    """Apply a committed change to the in-memory state."""
    for a, _ in deleted:
        st.delete(a)
    for a, b in added:
        st.add(a, b)

