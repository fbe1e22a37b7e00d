"""Decode and validate the plaintext of a sealed message (SEALING.md §5)."""
from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import cbor2

UNSEALED_OFFLINE = cbor2.dumps({"state": "offline"})
KNOWN_TELEMETRY = {"t", "seq", "hr", "spo2", "bp_sys", "bp_dia", "temp", "pump", "skip"}
KNOWN_STATUS = {"t", "seq", "state", "fw", "queued", "dropped", "skip"}
MAX_TEXT = 64
MAX_ALARMS = 32
#: The largest integer a store column holds (SQLite INTEGER, PostgreSQL bigint; a
#: REAL column binds a Python int as a 64-bit integer too). A larger one in an
#: authentic record made the whole batch fail to store, again at every redelivery.
MAX_INT = (1 << 63) - 1


class RecordError(ValueError):
    """Authentic plaintext that does not follow the record schema."""


@dataclass(slots=True)
class Telemetry:
    seq: int
    t: float
    hr: int | None = None
    spo2: int | None = None
    bp_sys: int | None = None
    bp_dia: int | None = None
    temp: float | None = None
    pump_state: str | None = None
    pump_rate: float | None = None
    pump_vtbi: float | None = None
    pump_infused: float | None = None
    pump_alarms: list[str] | None = None
    skip: tuple[int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Status:
    seq: int | None
    state: str
    t: float | None = None
    fw: str | None = None
    queued: int | None = None
    dropped: int | None = None
    skip: tuple[int, int] | None = None
    sealed: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


class _Decoders(threading.local):
    """One CBOR decoder per thread, given each plaintext as its stream: 0.45 us less per
    record than making one (it resets its shared values and string references at
    every item, as for the items of one stream: a plaintext cannot refer to another's)."""

    def __init__(self) -> None:
        self.decoder = cbor2.CBORDecoder(io.BytesIO(b""))


_DECODERS = _Decoders()


def _decode_map(data: bytes) -> dict[str, Any]:
    fp = io.BytesIO(data)
    decoder = _DECODERS.decoder
    decoder.fp = fp
    try:
        obj = decoder.decode()
    except (cbor2.CBORDecodeError, ValueError, EOFError, OverflowError, RecursionError) as exc:
        raise RecordError(f"plaintext is not CBOR: {exc}") from None
    if fp.tell() != len(data):
        raise RecordError("trailing bytes after the plaintext map")
    if not isinstance(obj, dict):
        raise RecordError("plaintext must be a CBOR map with text keys")
    for k in obj:
        if not isinstance(k, str):
            raise RecordError("plaintext must be a CBOR map with text keys")
    return obj


def _number(v: Any, name: str, *, optional: bool = True) -> float | None:
    if (type(v) is int and -MAX_INT <= v <= MAX_INT) or (type(v) is float and math.isfinite(v)):
        return v  # the common case, first
    if v is None and optional:
        return None
    if (isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v))
            or (isinstance(v, int) and not -MAX_INT <= v <= MAX_INT)):
        raise RecordError(f"{name} must be a finite number (an integer of at most 63 bits)")
    return v


def _uint(v: Any, name: str, *, optional: bool = True) -> int | None:
    if type(v) is int and 0 <= v <= MAX_INT:  # the common case, first
        return v
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_INT:
        raise RecordError(f"{name} must be an unsigned integer below 2^63")
    return v


def _text(v: Any, name: str) -> str:
    if not isinstance(v, str) or not v or len(v) > MAX_TEXT or "\x00" in v:
        raise RecordError(f"{name} must be non-empty text of at most {MAX_TEXT} characters, without NUL")
    return v


def _common(m: dict[str, Any], seq: int) -> tuple[float, tuple[int, int] | None]:
    s = m.get("seq")
    if s != seq or isinstance(s, bool):
        raise RecordError(f"seq in the plaintext ({s!r}) differs from the Partial IV ({seq})")
    if "t" not in m:
        raise RecordError("record has no time `t`")
    t = _number(m["t"], "t", optional=False)
    assert t is not None
    if t < 0:
        raise RecordError("t must not be negative")
    skip = None
    if "skip" in m:
        s = m["skip"]
        if (not isinstance(s, (list, tuple)) or len(s) != 2
                or any(isinstance(x, bool) or not isinstance(x, int) for x in s)
                or not 1 <= s[0] <= s[1] < seq):
            raise RecordError("skip must be [first, last] with 1 <= first <= last < seq")
        skip = (int(s[0]), int(s[1]))
    return t, skip


def parse_telemetry(plaintext: bytes, seq: int) -> Telemetry:
    m = _decode_map(plaintext)
    t, skip = _common(m, seq)
    get = m.get
    rec = Telemetry(seq, t, _uint(get("hr"), "hr"), _uint(get("spo2"), "spo2"),
                    _uint(get("bp_sys"), "bp_sys"), _uint(get("bp_dia"), "bp_dia"),
                    _number(get("temp"), "temp"), skip=skip)
    pump = get("pump")
    if pump is not None:
        if not isinstance(pump, dict):
            raise RecordError("pump must be a map")
        rec.pump_state = _text(pump.get("state"), "pump.state")
        rec.pump_rate = _number(pump.get("rate"), "pump.rate")
        rec.pump_vtbi = _number(pump.get("vtbi"), "pump.vtbi")
        rec.pump_infused = _number(pump.get("infused"), "pump.infused")
        alarms = pump.get("alarms", [])
        if not isinstance(alarms, (list, tuple)) or len(alarms) > MAX_ALARMS:
            raise RecordError("pump.alarms must be an array of at most 32 codes")
        rec.pump_alarms = [_text(a, "alarm code") for a in alarms]
    if not KNOWN_TELEMETRY.issuperset(m):
        rec.extra = {k: v for k, v in m.items() if k not in KNOWN_TELEMETRY}
    return rec


def parse_status(plaintext: bytes, seq: int) -> Status:
    m = _decode_map(plaintext)
    t, skip = _common(m, seq)
    st = Status(seq=seq, state=_text(m.get("state"), "state"), t=t, skip=skip)
    if m.get("fw") is not None:
        st.fw = _text(m["fw"], "fw")
    st.queued = _uint(m.get("queued"), "queued")
    st.dropped = _uint(m.get("dropped"), "dropped")
    st.extra = {k: v for k, v in m.items() if k not in KNOWN_STATUS}
    return st


def storable_int(v: Any) -> int | None:
    """``v`` if it is an integer a store column holds, else None: for the fields of
    reports that the schema does not check (an ill-typed one is None there too)."""
    return v if type(v) is int and -MAX_INT <= v <= MAX_INT else None


def storable_text(v: Any, limit: int | None = None) -> str:
    """``str(v)`` with a NUL written as ``\\0`` (PostgreSQL text cannot hold it), cut
    to ``limit`` characters: for the free-form texts of reports and of the rejection log."""
    return str(v).replace("\x00", "\\0")[:limit]


def jsonable(v: Any) -> Any:
    """Make decoded CBOR JSON-friendly (bytes → hex) for the raw `extra` column."""
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return repr(v)
