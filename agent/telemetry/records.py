# Plaintext records (CBOR maps with text keys) as SEALING.md section 5 defines.
#
# A sample (from the board HAL's sensors, or any sample_fn) is a dict:
#   {"hr": int|None, "spo2": int|None, "bp_sys": int|None, "bp_dia": int|None,
#    "temp": float|int|None,
#    "pump": {"state": str, "rate": num, "vtbi": num, "infused": num,
#             "alarms": [str, ...]}   # or absent on a monitor without pump
#   }
# Missing vital keys are simply left out; a value of None is sent as null.
# Anything else (wrong types, negative counts, unknown pump state) raises
# RecordError so that a broken sensor driver is noticed, not sealed.
from agent.telemetry import cbor

VITALS_INT = ("hr", "spo2", "bp_sys", "bp_dia")
PUMP_STATES = ("idle", "running", "paused", "alarm", "stopped")
MAX_ALARMS = 16
MAX_ALARM_LEN = 32
MAX_TEXT = 64


class RecordError(ValueError):
    pass


def _num(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise RecordError("%s must be a number" % name)
    if v != v:
        raise RecordError("%s is NaN" % name)
    return v


def _check_skip(skip, seq):
    if skip is None:
        return None
    lo, hi = skip
    if not (isinstance(lo, int) and isinstance(hi, int)) or not 1 <= lo <= hi < seq:
        raise RecordError("skip must be [lo, hi] with 1 <= lo <= hi < seq")
    return [lo, hi]


def _text(v, name, limit=MAX_TEXT):
    if not isinstance(v, str) or not v or len(v) > limit:
        raise RecordError("%s must be non-empty text up to %d chars" % (name, limit))
    return v


def telemetry_record(sample, seq, t, skip=None):
    """Record dict for one sample; seq must be the PIV it will be sealed under."""
    if not isinstance(sample, dict):
        raise RecordError("sample must be a dict")
    rec = {"t": t, "seq": seq}
    for k in VITALS_INT:
        if k in sample:
            v = sample[k]
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise RecordError("%s must be a non-negative integer or None" % k)
            rec[k] = v
    if "temp" in sample:
        v = sample["temp"]
        rec["temp"] = None if v is None else _num(v, "temp")
    pump = sample.get("pump")
    if pump is not None:
        if not isinstance(pump, dict):
            raise RecordError("pump must be a dict")
        state = pump.get("state")
        if state not in PUMP_STATES:
            raise RecordError("pump state must be one of %s" % (PUMP_STATES,))
        p = {"state": state}
        for k in ("rate", "vtbi", "infused"):
            p[k] = _num(pump.get(k), "pump " + k)
        alarms = pump.get("alarms", [])
        if not isinstance(alarms, (list, tuple)) or len(alarms) > MAX_ALARMS:
            raise RecordError("pump alarms must be a list of at most %d codes" % MAX_ALARMS)
        p["alarms"] = [_text(a, "alarm code", MAX_ALARM_LEN) for a in alarms]
        rec["pump"] = p
    s = _check_skip(skip, seq)
    if s:
        rec["skip"] = s
    return rec


MAX_UPDATE_KEYS = 12
MAX_UPDATE_TEXT = 160
MAX_UPDATE_BYTES = 600  # keys + values together: the sealed record stays < 1024 bytes
_UPDATE_FIRST = ("step", "version", "reason")


def update_map(ev):
    # An update agent report (agent/updates.py: {"step": ..., "version": ...,
    # "reason": ...}) as a small flat map of scalars for a status record:
    # step, version and reason first, then the other keys in sorted order;
    # text cut to MAX_UPDATE_TEXT, other values (lists, maps) as their repr;
    # at most MAX_UPDATE_KEYS keys and MAX_UPDATE_BYTES in all, so the sealed
    # message stays below the 1024-byte limit whatever the updater reports.
    if not isinstance(ev, dict) or not ev:
        raise RecordError("update report must be a non-empty dict")
    keys = [k for k in _UPDATE_FIRST if k in ev]
    keys += sorted([k for k in ev if isinstance(k, str) and k not in _UPDATE_FIRST])
    out = {}
    budget = MAX_UPDATE_BYTES
    for k in keys:
        if len(out) >= MAX_UPDATE_KEYS:
            break
        name = k[:32]
        v = ev[k]
        if v is None or isinstance(v, (bool, int)):
            cost = len(name) + 10
        elif isinstance(v, float):
            v = v if v == v else None
            cost = len(name) + 10
        else:
            if not isinstance(v, str):
                v = repr(v)
            room = budget - len(name) - 4
            if room <= 0:
                break
            v = v[:min(MAX_UPDATE_TEXT, room)]
            cost = len(name) + len(v.encode()) + 4
        if cost > budget:
            break
        out[name] = v
        budget -= cost
    return out


def status_record(seq, t, state, fw=None, queued=None, dropped=None, skip=None, update=None, extra=None,
                  command=None):
    # update: an update agent report (see update_map), sent with state "update";
    # command: a command result (agent/security/commands_run.py), state "command".
    # extra: more keys of a security record (state "posture" / "event",
    # agent/security); they never replace the keys above.
    rec = {"t": t, "seq": seq, "state": _text(state, "state")}
    if extra:
        for k in extra:
            rec[k] = extra[k]
        rec["t"] = t
        rec["seq"] = seq
    if fw is not None:
        rec["fw"] = _text(fw, "fw")
    if queued is not None:
        rec["queued"] = queued
    if dropped is not None:
        rec["dropped"] = dropped
    if update is not None:
        rec["update"] = update_map(update)
    if command is not None:
        rec["command"] = update_map(command)
    s = _check_skip(skip, seq)
    if s:
        rec["skip"] = s
    return rec


def encode(rec):
    return cbor.dumps(rec)


# The last will: the only unsealed payload (SEALING.md section 5).
LAST_WILL = cbor.dumps({"state": "offline"})
