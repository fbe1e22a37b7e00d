"""Verify, classify and store one MQTT message (SEALING.md §6). No network here.

``Ingestor.handle(topic, payload)`` is what the MQTT client calls for every message;
it returns an ``Outcome`` and has already written the result (record or counters)
to the fleet database in one transaction.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, NamedTuple, Sequence

from host_tools.pki import FleetPKI
from host_tools.pki.records import is_reserved_id

from . import cose
from .db import FleetDB
from .dbconn import is_unstorable
from .outcomes import OUTCOMES, Outcome
from .records import (UNSEALED_OFFLINE, RecordError, Status, Telemetry, jsonable, parse_status,
                      parse_telemetry)
from .sequence import SeqState, apply

TOPIC_RE = re.compile(r"^medsentry/([A-Za-z0-9._-]{1,64})/(telemetry|status)$")
#: A byte-identical copy at most this far below the highest record is a redelivery
#: (duplicate), further below a replay. At least the AMQP collector's prefetch window
#: (amqp.PREFETCH): a device's stored but unacknowledged records, all in one
#: partition, come back after a fault. Either way the copy is not stored again.
DUPLICATE_WINDOW = 4096
UNKNOWN_DEVICE = "?"
QUIET_NS = 200_000_000  # see KeyRing.reload


@functools.lru_cache(maxsize=65536)
def topic_parts(topic: str) -> tuple[str, str, bool] | None:
    """``medsentry/<device>/<kind>`` -> (device, kind, device is a reserved service
    name), or None for any other topic. Cached: a fleet has few distinct topics."""
    m = TOPIC_RE.match(topic)
    return None if m is None else (m.group(1), m.group(2), is_reserved_id(m.group(1)))


@dataclass
class _KeyEntry:
    device_id: str
    opener: cose.Opener
    retired: bool
    #: When the device's first telemetry key was issued (Unix s): it sealed nothing before.
    since: float


def _when(iso_time: str) -> float:
    try:
        return datetime.fromisoformat(iso_time).timestamp()
    except ValueError:
        return 0.0  # unknown: the most permissive (oldest) bound


class KeyRing:
    """kid -> (device, key), rebuilt from the PKI device records whenever they change.

    Records are saved by atomic rename, so the devices/ directory's mtime changes on
    every issue, rotation, retirement or revocation; one stat() tells. It is made per
    message, or once per batch before any of the batch is looked at (``check=False``
    then; a key id not known is looked up again after one more stat()): a batch holds
    only messages that arrived before it started, so a change is in force for every
    message that arrived after it in both cases. A new key is therefore usable from the
    first record sealed with it, and a retired one refused from then on.

    Thread-safe: the AMQP collector's receiving thread plans batches with it while its
    storer thread may look up keys of a batch it plans again.
    """

    def __init__(self, pki: FleetPKI) -> None:
        self.pki = pki
        self._entries: dict[bytes, _KeyEntry] = {}
        self._stamp: int | None = None
        self._dir = str(pki.devices_dir)
        self._lock = threading.Lock()
        self.reload()

    def _dir_stamp(self) -> int | None:
        try:
            return os.stat(self._dir).st_mtime_ns
        except OSError:
            return None

    def reload(self) -> None:
        with self._lock:
            self._reload()

    def _reload(self) -> None:
        stamp = self._dir_stamp()
        entries = {}
        for rec in self.pki.devices():
            since = min((_when(tk.created) for tk in rec.telemetry_keys), default=0.0)
            for tk in rec.telemetry_keys:
                entries[tk.kid] = _KeyEntry(rec.device_id, cose.Opener(tk.key, tk.base_iv), not tk.active,
                                            since)
        self._entries = entries
        # Directory mtimes have coarse (ms) granularity: a second change within the
        # same tick would keep the stamp. While the last change is that recent,
        # keep reloading on every lookup.
        recent = stamp is not None and time.time_ns() - stamp < QUIET_NS
        self._stamp = None if recent else stamp

    def refresh(self) -> None:
        if self._dir_stamp() != self._stamp:
            self.reload()

    def lookup(self, kid: bytes, check: bool = True) -> _KeyEntry | None:
        if check:
            self.refresh()
        entry = self._entries.get(kid)
        if entry is None and not check:
            self.refresh()
            entry = self._entries.get(kid)
        return entry


def _extra(rec: Telemetry) -> str:
    """A telemetry record's fields beyond the schema, as stored (JSON, or "")."""
    return json.dumps(jsonable(rec.extra)) if rec.extra else ""


class PlannedBatch(NamedTuple):
    """A batch with steps 1-5 done (``Ingestor.plan_batch``): one call per message,
    in order, that applies the rest of its steps and writes the database."""

    messages: list[tuple[str, bytes]]
    now: float
    plans: list[Callable[[], Outcome]]
    #: the MQTT retain flag of each message (the Mosquitto collector); () = none
    retained: tuple[bool, ...] = ()


class Ingestor:
    """Applies SEALING.md §6 to each message and stores the result."""

    def __init__(self, pki: FleetPKI, db: FleetDB) -> None:
        self.pki = pki
        self.db = db
        self.keys = KeyRing(pki)
        self.lock = threading.Lock()
        self.seq: dict[str, SeqState] = {
            dev: SeqState(h, m, at) for dev, (h, m, at) in db.load_sequence_state().items()
        }
        self.stats: dict[str, int] = {k: 0 for k in OUTCOMES}

    # -- entry point -----------------------------------------------------------------
    def handle(self, topic: str, payload: bytes, now: float | None = None, retained: bool = False) -> Outcome:
        """Verify, classify and store one message. ``retained`` = the broker sent it
        because we (re)subscribed (MQTT retain flag), i.e. it may be old."""
        now = time.time() if now is None else now
        with self.lock:
            try:
                out = self._handle(topic, bytes(payload), now, retained, True)()
            except Exception as exc:
                if not is_unstorable(exc):
                    raise
                # its writes were rolled back with its transaction (a savepoint in a batch)
                out = self._refuse_unstorable(topic, bytes(payload), now, exc)
            self.stats[out.kind] = self.stats.get(out.kind, 0) + 1
            return out

    def handle_batch(self, messages: list[tuple[str, bytes]], now: float | None = None,
                     retained: Sequence[bool] = ()) -> list[Outcome]:
        """``plan_batch`` then ``store_planned``, one after the other (both collectors'
        storers). A failure rolls the whole batch back and raises: the caller
        acknowledges nothing of it. ``retained``: each message's MQTT retain flag, as
        for ``handle``; empty when none is."""
        return self.store_planned(self.plan_batch(messages, now, retained))

    def plan_batch(self, messages: list[tuple[str, bytes]], now: float | None = None,
                   retained: Sequence[bool] = ()) -> PlannedBatch:
        """Steps 1-5 of every message (parse, key lookup, verify, decrypt, record
        checks), without the database and without ``self.lock``: the AMQP collector's
        receiving thread plans a batch while its storer commits the one before. The
        key ring is checked once, here, after the batch's last message arrived (see
        KeyRing). Nothing here reads or changes the sequence state."""
        now = time.time() if now is None else now
        flags = tuple(retained)
        if flags and len(flags) != len(messages):
            raise ValueError(f"{len(flags)} retain flags for {len(messages)} messages")
        self.keys.refresh()
        handle = self._handle
        return PlannedBatch(messages, now, [handle(topic, bytes(payload), now, r, False) for (topic, payload), r
                                            in zip(messages, flags or itertools.repeat(False))], flags)

    def store_planned(self, batch: PlannedBatch) -> list[Outcome]:
        """Store a planned batch in ONE transaction holding the store lock of its
        devices (``FleetDB.lock_store``), each touched device's sequence state read
        fresh from the database inside it (another collector may have stored its
        newer records). A failure rolls the whole batch back and raises.

        Except when the database refuses a value of an authentic record (one it cannot
        hold, see ``is_unstorable``): storing the same batch again would fail again,
        at every redelivery, stalling every device behind that record. The batch is
        then stored in halves, down to the single messages at fault, each refused
        as malformed (O(log n) retries per such message)."""
        messages, now = batch.messages, batch.now
        try:
            return self._store_batch(batch)
        except Exception as exc:
            if not is_unstorable(exc):
                raise
            if len(messages) == 1:
                with self.lock:
                    out = self._refuse_unstorable(messages[0][0], bytes(messages[0][1]), now, exc)
                    self.stats[out.kind] = self.stats.get(out.kind, 0) + 1
                return [out]
        half, flags = len(messages) // 2, batch.retained
        return (self.handle_batch(messages[:half], now, flags[:half])
                + self.handle_batch(messages[half:], now, flags[half:]))

    def _refuse_unstorable(self, topic: str, payload: bytes, now: float, exc: BaseException) -> Outcome:
        """Count an authentic message the database could not store as malformed."""
        parts = topic_parts(topic)
        device_id = parts[0] if parts else UNKNOWN_DEVICE
        try:
            seq: int | None = cose.parse(payload).seq
        except cose.CoseError:
            seq = None
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return self._count_only(Outcome("malformed", device_id, seq, f"authentic but cannot be stored: {why}"),
                                topic, len(payload), now)

    def _store_batch(self, batch: PlannedBatch) -> list[Outcome]:
        with self.lock:
            devices = sorted({p[0] for p in (topic_parts(t) for t, _ in batch.messages) if p})
            with self.db.lock:
                self.db.whole_batch = True
                try:
                    with self.db.pipelined():  # one round trip on PostgreSQL
                        self.db.begin_batch()
                        self.db.lock_store(devices)
                        fresh = self.db.load_sequence_state(devices)
                    for dev in devices:
                        self.seq.pop(dev, None)
                        if dev in fresh:
                            self.seq[dev] = SeqState(*fresh[dev])
                    with self.db.deferred_writes():
                        outs = [plan() for plan in batch.plans]
                    self.db.commit_batch()
                except BaseException:
                    self.db.rollback_batch()
                    raise
                finally:
                    self.db.whole_batch = False
            for out in outs:
                self.stats[out.kind] = self.stats.get(out.kind, 0) + 1
            return outs

    def _count_only(self, out: Outcome, topic: str, size: int, now: float) -> Outcome:
        with self.db.transaction() as tx:
            tx.bump(out.device_id, out.kind)
            if out.rejected or out.kind == "ignored":
                tx.reject(now, topic, out.device_id, out.kind, out.detail, size)
        return out

    def _handle(self, topic: str, payload: bytes, now: float, retained: bool,
                check_keys: bool) -> Callable[[], Outcome]:
        """Steps 1-5 (parse, key lookup, verify, decrypt, record checks) now; the
        returned call does the rest and writes the database. (Calls are partials,
        not lambdas: a lambda makes every variable it uses a cell, slower to read
        for the whole function, at each of some 20,000 messages a second.)"""
        parts = topic_parts(topic)
        if parts is None:
            return self._refusal(Outcome("ignored", UNKNOWN_DEVICE, detail="unexpected topic"), topic, payload, now)
        device_id, kind, reserved = parts
        if reserved:  # service names (see broker ACL notes)
            return self._refusal(Outcome("ignored", UNKNOWN_DEVICE, detail="reserved name in topic"),
                                 topic, payload, now)

        if kind == "status" and payload[:1] != b"\xd0":
            return functools.partial(self._unsealed_status, device_id, topic, payload, now, retained)

        try:
            sealed = cose.parse(payload)
        except cose.CoseError as exc:
            return self._refusal(Outcome("malformed", device_id, detail=str(exc)), topic, payload, now)
        seq = sealed.seq

        entry = self.keys.lookup(sealed.kid, check=check_keys)
        if entry is None:
            return self._refusal(Outcome("unknown_kid", device_id, seq, f"kid {sealed.kid.hex()}"),
                                 topic, payload, now)
        if entry.device_id != device_id:
            return self._refusal(
                Outcome("wrong_device", device_id, seq, f"kid of {entry.device_id} on {device_id}'s topic"),
                topic, payload, now)
        if entry.retired:
            return self._refusal(Outcome("retired_key", device_id, seq, f"kid {sealed.kid.hex()} retired"),
                                 topic, payload, now)

        try:
            plaintext = entry.opener.open(sealed, topic)
        except cose.AuthError as exc:
            return self._refusal(Outcome("forged", device_id, seq, str(exc)), topic, payload, now)

        try:
            rec = parse_telemetry(plaintext, seq) if kind == "telemetry" else parse_status(plaintext, seq)
        except RecordError as exc:
            return self._refusal(Outcome("malformed", device_id, seq, f"authentic but {exc}"), topic, payload, now)

        return functools.partial(self._sequence_and_store, device_id, topic, payload, sealed, rec, now,
                                 entry.since, plaintext)

    def _refusal(self, out: Outcome, topic: str, payload: bytes, now: float) -> Callable[[], Outcome]:
        return functools.partial(self._count_only, out, topic, len(payload), now)

    # -- sealed, authentic records ------------------------------------------------------
    def _sequence_and_store(self, device_id: str, topic: str, payload: bytes, sealed: cose.Sealed,
                            rec: Telemetry | Status, now: float, since: float,
                            plaintext: bytes | None = None) -> Outcome:
        """Steps 6-8 of SEALING.md section 6. Touches O(1) hole rows per record."""
        seq: int = rec.seq  # type: ignore[assignment]  # a sealed record's, checked equal to sealed.seq
        st = self.seq.get(device_id) or SeqState()
        digest = hashlib.sha256(payload).digest()
        if st.highest is not None and st.last_at is not None and seq == st.highest + 1 and rec.skip is None:
            # In order, the common case: no hole opens or closes, no event (what the
            # general steps below decide for it, without planning each of them).
            if not (isinstance(rec, Telemetry)
                    and self.db.accept_in_order(device_id, seq, sealed.kid, topic, digest, now, rec,
                                                _extra(rec))):
                with self.db.transaction() as tx:
                    tx.accept(device_id, seq, sealed.kid, topic, digest, now, seq)
                    self._write_record(tx, device_id, rec, now)
                    tx.bump(device_id, "accepted")
            st.next_in_order(now)
            return Outcome("accepted", device_id, seq, topic=topic, plaintext=plaintext)
        added: list[tuple[int, int]] = []
        deleted: list[tuple[int, int]] = []
        events: list[tuple[str, int, int]] = []
        highest = st.highest
        hole = None if st.highest is None or seq > st.highest else st.hole_of(seq)
        if st.highest is None or seq > st.highest:
            allowed = st.allowed_jump(now, since)
            if seq - (st.highest or 0) > allowed:
                return self._count_only(Outcome(
                    "implausible_seq", device_id, seq,
                    f"jump {seq - (st.highest or 0)} above highest {st.highest or 0}, at most {allowed}"),
                    topic, len(payload), now)
            added, skipped, note = st.plan_jump(seq, rec.skip)
            events += [("gap", (st.highest or 0) + 1, seq - 1)] if seq > (st.highest or 0) + 1 else []
            events += [("skipped", a, b) for a, b in skipped]
            if note:
                skip = rec.skip
                assert skip is not None  # a note is only made for a skip
                events.append((note, skip[0], skip[1]))
            highest = seq
        elif hole is not None:
            old, added = st.fill(hole, seq)
            deleted.append(old)
            events.append(("filled", seq, seq))
        else:
            old_digest = self.db.accepted_digest(device_id, seq)
            if old_digest == digest and st.highest - seq < DUPLICATE_WINDOW:
                return self._count_only(Outcome("duplicate", device_id, seq, "QoS 1 redelivery"),
                                        topic, len(payload), now)
            return self._count_only(
                Outcome("replayed", device_id, seq, f"seq {seq} <= highest {st.highest}, not missing"),
                topic, len(payload), now)
        expired = st.plan_expiry(len(added) - len(deleted))
        events += [("expired", a, b) for a, b in expired]

        assert highest is not None
        # Planned above without touching ``st``: if the transaction fails, the
        # in-memory state still matches the database.
        with self.db.transaction() as tx:
            tx.accept(device_id, seq, sealed.kid, topic, digest, now, highest)
            self._write_record(tx, device_id, rec, now)
            tx.change_missing(device_id, deleted + expired, added)
            if expired:
                tx.bump(device_id, "lost_expired", sum(b - a + 1 for a, b in expired))
            for kind, a, b in events:
                tx.gap_event(device_id, kind, a, b, now)
            tx.bump(device_id, "accepted")
        apply(st, deleted + expired, added)
        if st.highest is None or highest > st.highest:
            st.spend_jump(highest - (st.highest or 0), now, since)
        st.highest = highest
        st.last_at = now
        self.seq[device_id] = st
        return Outcome("accepted", device_id, seq, topic=topic, plaintext=plaintext)

    @staticmethod
    def _write_record(tx: Any, device_id: str, rec: Telemetry | Status, now: float) -> None:
        if isinstance(rec, Status):
            tx.status(device_id, rec, now)
        else:
            tx.vitals(device_id, rec, now, _extra(rec))

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
        return Outcome("status_unsealed", device_id, topic=topic, plaintext=payload)
