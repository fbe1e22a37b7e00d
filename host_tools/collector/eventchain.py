"""Verify a device's security event log from what the collector received.

Pure: input are the entries as received (in the order the device sealed them)
and the event-log heads the device put in its posture reports; output names
every problem: ``gap`` (numbers never received), ``edit`` (an entry whose bytes
are not what the next entry or a posture head chained onto), ``fork`` (two
different entries with one number), ``reorder`` (a new number sealed after a
higher one), ``truncation`` (a head beyond the last entry received, or a head
that went back), ``malformed`` (bytes that are no entry).
Entry format: agent/security/eventlog.py; hash = SHA-256 of the entry bytes.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable

from .security_db import decode_entry

ZERO = bytes(32)


@dataclass
class Problem:
    kind: str
    n: int | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "n": self.n, "detail": self.detail}


@dataclass
class ChainReport:
    entries: int = 0
    first: int | None = None
    last: int | None = None
    head: int | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "first": self.first, "last": self.last,
                "head": self.head, "problems": [p.as_dict() for p in self.problems]}


def verify(received: Iterable[bytes], heads: Iterable[tuple[int, bytes]] = ()) -> ChainReport:
    """received: entry bytes in sealing order; heads: (n, hash) from posture, in order."""
    rep = ChainReport()
    by_n: dict[int, bytes] = {}
    decoded: dict[int, list[Any]] = {}
    highest = 0
    for i, data in enumerate(received):
        e = decode_entry(data)
        if e is None:
            rep.problems.append(Problem("malformed", None, f"received entry #{i + 1} is not a log entry"))
            continue
        n = e[0]
        if n in by_n:
            if by_n[n] != data:
                rep.problems.append(Problem("fork", n, f"two different entries numbered {n}"))
            continue  # an identical resend
        if n < highest:
            rep.problems.append(Problem("reorder", n, f"entry {n} was sealed after entry {highest}"))
        highest = max(highest, n)
        by_n[n] = data
        decoded[n] = e
    rep.entries = len(by_n)
    if by_n:
        rep.first, rep.last = min(by_n), max(by_n)
        expect_first = 1
        if rep.first > expect_first:
            rep.problems.append(Problem("gap", expect_first, f"entries {expect_first}..{rep.first - 1} never received"))
        prev_n = None
        for n in sorted(by_n):
            if prev_n is not None and n > prev_n + 1:
                rep.problems.append(Problem("gap", prev_n + 1, f"entries {prev_n + 1}..{n - 1} never received"))
            chained_on = bytes(decoded[n][5])
            if n == 1 and chained_on != ZERO:
                rep.problems.append(Problem("edit", 1, "entry 1 does not start the chain"))
            if prev_n == n - 1 and hashlib.sha256(by_n[prev_n]).digest() != chained_on:
                rep.problems.append(Problem("edit", prev_n, f"entry {prev_n} is not the entry {n} chained onto"))
            prev_n = n
    top = 0
    for hn, hh in heads:
        if hn < top:
            rep.problems.append(Problem("truncation", hn, f"the device's log head went back from {top} to {hn}"))
        top = max(top, hn)
        rep.head = hn
        if hn == 0:
            continue
        if hn not in by_n:
            if rep.last is None or hn > rep.last:
                rep.problems.append(Problem("truncation", hn, f"posture head is entry {hn}, last received "
                                                              f"{rep.last or 0}"))
            continue
        if hashlib.sha256(by_n[hn]).digest() != bytes(hh):
            rep.problems.append(Problem("edit", hn, f"entry {hn} differs from the head in a posture report"))
    # One finding per (kind, n): a tampered entry may trip several checks.
    seen: set[tuple[str, int | None]] = set()
    uniq = []
    for p in rep.problems:
        if (p.kind, p.n) not in seen:
            seen.add((p.kind, p.n))
            uniq.append(p)
    rep.problems = uniq
    return rep


def verify_device(db: Any, device_id: str) -> ChainReport:
    """Check a device's received entries against each other and its posture heads."""
    from . import security_db

    rows = security_db.events(db, device_id)
    heads = [(p["head_n"], bytes(p["head_h"])) for p in security_db.postures(db, device_id)
             if p["head_n"] is not None and p["head_h"] is not None]
    return verify([bytes(r["entry"]) for r in rows], heads)
