# Persistent device security flags (ROUND2 contract 2), /state/security.json:
#   quarantine            bool: network narrowed to broker + update server,
#                         console login disabled
#   console_unlock_until  board epoch seconds until which the console may be
#                         used despite quarantine (0 = none)
# Written atomically (temp + rename). A missing file is the default (no
# quarantine, console locked). A corrupt file fails closed for the unlock
# (0) and is reported as an integrity_violation event; quarantine then keeps
# its default False (a corrupt file must not lock operators out of a device
# they need to reach; the event raises the alarm).
import json

from board.compat import write_atomic

FILE = "security.json"
DEFAULT = {"quarantine": False, "console_unlock_until": 0}


def _path(state_dir):
    return state_dir + "/" + FILE


def _report(why):
    try:
        from agent.security import events
    except ImportError:
        return
    events.emit("integrity_violation", "warning", {"file": FILE, "reason": why})


def load(state_dir):
    out = {"quarantine": False, "console_unlock_until": 0}
    try:
        with open(_path(state_dir)) as f:
            text = f.read()
    except OSError:
        return out
    try:
        d = json.loads(text)
    except ValueError:
        _report("not JSON")
        return out
    if not isinstance(d, dict):
        _report("not an object")
        return out
    q = d.get("quarantine")
    u = d.get("console_unlock_until")
    if not isinstance(q, bool) or not isinstance(u, int) or isinstance(u, bool) or u < 0:
        _report("bad field types")
        return out
    out["quarantine"] = q
    out["console_unlock_until"] = u
    return out


def _save(state_dir, d):
    write_atomic(_path(state_dir), json.dumps(d))


def set_quarantine(state_dir, on):
    d = load(state_dir)
    d["quarantine"] = bool(on)
    _save(state_dir, d)
    return d


def set_console_unlock(state_dir, until):
    if not isinstance(until, int) or isinstance(until, bool) or until < 0:
        raise ValueError("console_unlock_until must be a non-negative int")
    d = load(state_dir)
    d["console_unlock_until"] = until
    _save(state_dir, d)
    return d


def console_allowed(state_dir, now):
    # Quarantine disables console login unless an unlock is running.
    d = load(state_dir)
    if not d["quarantine"]:
        return True
    return d["console_unlock_until"] > now
