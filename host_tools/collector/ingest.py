"""Verify, classify and store one MQTT message (SEALING.md §6). No network here.

``Ingestor.handle(topic, payload)`` is what the MQTT client calls for every message;
it returns an ``Outcome`` and has already written the result (record or counters)
to the fleet database in one transaction.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from bisect import bisect_right
from dataclasses import dataclass

from host_tools.pki import FleetPKI
from host_tools.pki.records import is_reserved_id

from . import cose
from .db import FleetDB
from .records import UNSEALED_OFFLINE, RecordError, Status, jsonable, parse_status, parse_telemetry

TOPIC_RE = re.compile(r"^medsentry/([A-Za-z0-9._-]{1,64})/(telemetry|status)$")
DUPLICATE_WINDOW = 1024
MAX_MISSING_RANGES = 10000
UNKNOWN_DEVICE = "?"
QUIET_NS = 200_000_000  # see KeyRing.reload

OUTCOMES = ("accepted", "duplicate", "replayed", "forged", "malformed", "unknown_kid",
            "wrong_device", "retired_key", "status_unsealed", "ignored")
REJECTIONS = ("replayed", "forged", "malformed", "unknown_kid", "wrong_device", "retired_key")


@dataclass(frozen=True)
class Outcome:
    kind: str
    device_id: str
    seq: int | None = None
    detail: str = ""

    @property
    def rejected(self) -> bool:
        return self.kind in REJECTIONS


@dataclass
class _KeyEntry:
    device_id: str
    opener: cose.Opener
    retired: bool


class KeyRing:
    """kid -> (device, key), rebuilt from the PKI device records whenever they change.

    Records are saved by atomic rename, so the devices/ directory's mtime changes on
    every issue, rotation, retirement or revocation; one stat() per message tells.
    A new key is therefore usable from the first record sealed with it.
    """

    def __init__(self, pki: FleetPKI) -> None:
        self.pki = pki
        self._entries: dict[bytes, _KeyEntry] = {}
        self._stamp: int | None = None
        self.reload()

    def _dir_stamp(self) -> int | None:
        try:
            return self.pki.devices_dir.stat().st_mtime_ns
        except OSError:
            return None

    def reload(self) -> None:
        stamp = self._dir_stamp()
        entries = {}
        for rec in self.pki.devices():
            for tk in rec.telemetry_keys:
                entries[tk.kid] = _KeyEntry(rec.device_id, cose.Opener(tk.key, tk.base_iv), not tk.active)
        self._entries = entries
        # Directory mtimes have coarse (ms) granularity: a second change within the
        # same tick would keep the stamp. While the last change is that recent,
        # keep reloading on every lookup.
        recent = stamp is not None and time.time_ns() - stamp < QUIET_NS
        self._stamp = None if recent else stamp

    def lookup(self, kid: bytes) -> _KeyEntry | None:
        if self._dir_stamp() != self._stamp:
            self.reload()
        return self._entries.get(kid)


class SeqState:
    """Highest accepted sequence number and the open holes below it."""

    def __init__(self, highest: int | None = None, missing: list[list[int]] | None = None) -> None:
        self.highest = highest
        self.missing = missing or []  # sorted, disjoint, inclusive [first, last]

    def in_missing(self, seq: int) -> bool:
        i = bisect_right(self.missing, [seq, float("inf")]) - 1
        return i >= 0 and self.missing[i][0] <= seq <= self.missing[i][1]

    @staticmethod
    def remove(ranges: list[list[int]], lo: int, hi: int) -> tuple[list[list[int]], list[tuple[int, int]]]:
        """(ranges minus [lo, hi], the removed sub-ranges)."""
        out, removed = [], []
        for a, b in ranges:
            if b < lo or a > hi:
                out.append([a, b])
                continue
            if a < lo:
                out.append([a, lo - 1])
            if b > hi:
                out.append([hi + 1, b])
            removed.append((max(a, lo), min(b, hi)))
        return out, removed


class Ingestor:
    """Applies SEALING.md §6 to each message and stores the result."""

    def __init__(self, pki: FleetPKI, db: FleetDB) -> None:
        self.pki = pki
        self.db = db
        self.keys = KeyRing(pki)
        self.lock = threading.Lock()
        self.seq: dict[str, SeqState] = {
            dev: SeqState(h, m) for dev, (h, m) in db.load_sequence_state().items()
        }
        self.stats: dict[str, int] = {k: 0 for k in OUTCOMES}

    # -- entry point -----------------------------------------------------------------
    def handle(self, topic: str, payload: bytes, now: float | None = None, retained: bool = False) -> Outcome:
        """Verify, classify and store one message. ``retained`` = the broker sent it
        because we (re)subscribed (MQTT retain flag), i.e. it may be old."""
        now = time.time() if now is None else now
        with self.lock:
            out = self._handle(topic, bytes(payload), now, retained)
            self.stats[out.kind] = self.stats.get(out.kind, 0) + 1
            return out

    def _count_only(self, out: Outcome, topic: str, size: int, now: float) -> Outcome:
        with self.db.transaction() as tx:
            tx.bump(out.device_id, out.kind)
            if out.rejected or out.kind == "ignored":
                tx.reject(now, topic, out.device_id, out.kind, out.detail, size)
        return out

    def _handle(self, topic: str, payload: bytes, now: float, retained: bool = False) -> Outcome:
        m = TOPIC_RE.match(topic)
        if not m:
            return self._count_only(Outcome("ignored", UNKNOWN_DEVICE, detail="unexpected topic"),
                                    topic, len(payload), now)
        device_id, kind = m.group(1), m.group(2)
        if is_reserved_id(device_id):  # service names (see broker ACL notes)
            return self._count_only(Outcome("ignored", UNKNOWN_DEVICE, detail="reserved name in topic"),
                                    topic, len(payload), now)

        if kind == "status" and payload[:1] != b"\xd0":
            return self._unsealed_status(device_id, topic, payload, now, retained)

        try:
            sealed = cose.parse(payload)
        except cose.CoseError as exc:
            return self._count_only(Outcome("malformed", device_id, detail=str(exc)), topic, len(payload), now)
        seq = sealed.seq

        entry = self.keys.lookup(sealed.kid)
        if entry is None:
            return self._count_only(Outcome("unknown_kid", device_id, seq, f"kid {sealed.kid.hex()}"),
                                    topic, len(payload), now)
        if entry.device_id != device_id:
            return self._count_only(
                Outcome("wrong_device", device_id, seq, f"kid of {entry.device_id} on {device_id}'s topic"),
                topic, len(payload), now)
        if entry.retired:
            return self._count_only(Outcome("retired_key", device_id, seq, f"kid {sealed.kid.hex()} retired"),
                                    topic, len(payload), now)

        try:
            plaintext = entry.opener.open(sealed, topic)
        except cose.AuthError as exc:
            return self._count_only(Outcome("forged", device_id, seq, str(exc)), topic, len(payload), now)

        try:
            rec = parse_telemetry(plaintext, seq) if kind == "telemetry" else parse_status(plaintext, seq)
        except RecordError as exc:
            return self._count_only(Outcome("malformed", device_id, seq, f"authentic but {exc}"),
                                    topic, len(payload), now)

        return self._sequence_and_store(device_id, topic, payload, sealed, rec, now)

    # -- sealed, authentic records ------------------------------------------------------
    def _sequence_and_store(self, device_id: str, topic: str, payload: bytes, sealed: cose.Sealed,
                            rec: object, now: float) -> Outcome:
        seq = sealed.seq
        st = self.seq.get(device_id) or SeqState()
        digest = hashlib.sha256(payload).digest()
        new_missing: list[list[int]] | None = None
        events: list[tuple[str, int, int]] = []
        highest = st.highest
        if st.highest is None or seq > st.highest:
            start = 1 if st.highest is None else st.highest + 1
            if seq > start:
                new_missing = st.missing + [[start, seq - 1]]
                events.append(("gap", start, seq - 1))
            highest = seq
        elif st.in_missing(seq):
            new_missing, _ = SeqState.remove(st.missing, seq, seq)
            events.append(("filled", seq, seq))
        else:
            old = self.db.accepted_digest(device_id, seq)
            if old == digest and st.highest - seq < DUPLICATE_WINDOW:
                return self._count_only(Outcome("duplicate", device_id, seq, "QoS 1 redelivery"),
                                        topic, len(payload), now)
            return self._count_only(
                Outcome("replayed", device_id, seq, f"seq {seq} <= highest {st.highest}, not missing"),
                topic, len(payload), now)

        skip = getattr(rec, "skip", None)
        if skip is not None:
            base = new_missing if new_missing is not None else st.missing
            after, removed = SeqState.remove(base, skip[0], skip[1])
            if removed:
                new_missing = after
                events += [("skipped", a, b) for a, b in removed]
        if new_missing is not None and len(new_missing) > MAX_MISSING_RANGES:
            new_missing = new_missing[-MAX_MISSING_RANGES:]

        assert highest is not None
        with self.db.transaction() as tx:
            tx.touch_device(device_id, now)
            tx.accept(device_id, seq, sealed.kid, topic, digest, now, highest)
            if isinstance(rec, Status):
                tx.status(device_id, rec, now)
            else:
                extra = json.dumps(jsonable(rec.extra)) if rec.extra else ""  # type: ignore[attr-defined]
                tx.vitals(device_id, rec, now, extra)
            if new_missing is not None:
                tx.set_missing(device_id, new_missing)
            for kind, a, b in events:
                tx.gap_event(device_id, kind, a, b, now)
            tx.bump(device_id, "accepted")
        st.highest = highest
        if new_missing is not None:
            st.missing = new_missing
        self.seq[device_id] = st
        return Outcome("accepted", device_id, seq)

    def _unsealed_status(self, device_id: str, topic: str, payload: bytes, now: float,
                         retained: bool) -> Outcome:
        if payload == b"":
            # A zero-length retained publish clears the retained will (MQTT).
            return self._count_only(Outcome("ignored", device_id, detail="empty status (retain clear)"),
                                    topic, 0, now)
        if retained and payload == UNSEALED_OFFLINE:
            # A retained will is re-sent on every (re)subscription and may be older
            # than the device's latest sealed status: only believe it for a device
            # we know nothing about yet.
            known = self.db.device(device_id)
            if known is not None and known.get("status_at") is not None:
                return self._count_only(Outcome("ignored", device_id, detail="stale retained last will"),
                                        topic, len(payload), now)
        if payload != UNSEALED_OFFLINE:
            return self._count_only(
                Outcome("malformed", device_id, detail="unsealed status other than the last will"),
                topic, len(payload), now)
        with self.db.transaction() as tx:
            tx.touch_device(device_id, now)
            tx.status(device_id, Status(seq=None, state="offline", sealed=False), now)
            tx.bump(device_id, "status_unsealed")
        return Outcome("status_unsealed", device_id)
