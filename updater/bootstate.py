# Boot state: the one file the loader and the application share.
#
# Deployed twice: as bootstate.mpy beside loader.mpy in the flash "loader"
# partition (the factory loader, never updated, reads it), and in every app
# slot as updater.bootstate (the installer and the update agent write it).
#
# /state/boot.json, always replaced atomically (temp + rename):
#   {"format": 1,               layout version of this file (FORMAT)
#    "active": "a",             confirmed slot
#    "floor": 3,                security counter floor: no slot below it boots
#    "trial": null | {"slot": "b", "attempts": 0, "max_attempts": 3,
#                     "deadline": unix time, "version": "1.2.0", "counter": 4},
#                   (the deadline is informative: the agent enforces it in trial
#                   uptime, so a device left unpowered past it does not roll back
#                   a good release; the loader only counts boots)
#    "events": [ {"type": "rolled_back"|"confirmed"|..., ...} ],  last few, for reporting
#    "failed": [manifest_sha256, ...]}  packages rolled back: never installed again
# A file without "format" is format 1 (written before the field existed).
#
# Format rule: "active" and "floor" keep their meaning in every format. A
# newer format may change anything else; a reader that meets a format above
# FORMAT uses only those two (boots the confirmed slot, no trial) and never
# writes the file back (see loader.decide).
#
# Each slot carries /slot_X/slot.json: {"version", "security_counter", "model",
# "manifest_sha256", optionally "entry"}, written last by the installer.
import json

BOOT_STATE = "boot.json"
FORMAT = 1
SLOTS = ("a", "b")
MAX_EVENTS = 8
# Module the loader starts when slot.json declares no "entry" (slots
# installed before the field existed). Started by name: the updater package
# never imports the application.
DEFAULT_ENTRY = "agent.main"


class BootError(OSError):
    pass


def other(slot):
    return SLOTS[1 - SLOTS.index(slot)]


def default_state():
    return {"format": FORMAT, "active": "a", "floor": 0, "trial": None, "events": []}


def _format_of(st):
    # -> the file's format number, or None when the field is malformed
    f = st.get("format", 1)
    if isinstance(f, int) and not isinstance(f, bool) and f >= 1:
        return f
    return None


def read_state(state_dir):
    # The boot state; {"corrupt": True} added when the file could not be
    # understood (slot A is then assumed), {"unknown_format": N} when it was
    # written in a newer format than this code knows.
    try:
        with open(state_dir + "/" + BOOT_STATE) as f:
            st = json.loads(f.read())
    except OSError:
        return default_state()
    except ValueError:
        # Cannot happen with temp+rename on littlefs; if it does anyway,
        # boot slot A rather than brick, and say so.
        st = default_state()
        st["corrupt"] = True
        return st
    if not isinstance(st, dict) or st.get("active") not in SLOTS or _format_of(st) is None:
        st = default_state()
        st["corrupt"] = True
        return st
    fmt = _format_of(st)
    if fmt > FORMAT:
        floor = st.get("floor", 0)
        out = {"format": fmt, "unknown_format": fmt, "active": st["active"], "floor": floor,
               "trial": None, "events": []}
        if not isinstance(floor, int) or isinstance(floor, bool):
            # A floor we cannot read is no floor we may ignore, nor a reason
            # to brick: the loader then boots only the slot with the highest
            # security counter (the floor never exceeds it: it is raised only
            # to a confirmed slot's counter).
            out["floor"] = 0
            out["floor_unknown"] = True
        return out
    st["format"] = fmt
    st.setdefault("floor", 0)
    st.setdefault("trial", None)
    st.setdefault("events", [])
    return st


def write_state(state_dir, st):
    # board.compat is firmware (frozen with the HAL), so the loader may use it.
    from board.compat import write_atomic

    if st.get("unknown_format"):
        # Written back in our format it would lose what the newer one holds.
        raise BootError("boot state format %s is newer than this code knows" % st["unknown_format"])
    st["format"] = FORMAT
    write_atomic(state_dir + "/" + BOOT_STATE, json.dumps(st))


def add_event(st, ev):
    evs = st.get("events") or []
    evs.append(ev)
    st["events"] = evs[-MAX_EVENTS:]


def slot_info(path):
    # slot.json of a slot, or None when the slot holds no complete install.
    try:
        with open(path + "/slot.json") as f:
            info = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def valid_entry(name):
    # A dotted module name ("agent.main"): nothing else may reach __import__.
    if not isinstance(name, str) or not name or len(name) > 64:
        return False
    for part in name.split("."):
        if not part or not (part[0].isalpha() or part[0] == "_"):
            return False
        for c in part:
            if not (c.isalpha() or c.isdigit() or c == "_"):
                return False
    return True


def entry_of(info):
    # Entry module declared by a slot's slot.json (DEFAULT_ENTRY when absent).
    name = (info or {}).get("entry", DEFAULT_ENTRY)
    return name if valid_entry(name) else None
