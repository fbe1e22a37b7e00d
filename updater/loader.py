# The boot loader that lives in the flash "loader" partition (deployed there
# as loader.mpy; the same module ships in the app so the installer shares its
# boot-state code). It decides which slot boots, counts trial boots, and rolls
# back a trial that crashes, hangs or is not confirmed in time.
#
# Boot state, /state/boot.json, always replaced atomically (temp + rename):
#   {"active": "a",             confirmed slot
#    "floor": 3,                security counter floor: no slot below it boots
#    "trial": null | {"slot": "b", "attempts": 0, "max_attempts": 3,
#                     "deadline": unix time, "version": "1.2.0", "counter": 4},
#                   (the deadline is informative: the agent enforces it in trial
#                   uptime, so a device left unpowered past it does not roll back
#                   a good release; the loader only counts boots)
#    "events": [ {"type": "rolled_back"|"confirmed"|..., ...} ],  last few, for reporting
#    "failed": [manifest_sha256, ...]}  packages rolled back: never installed again
# Each slot carries /slot_X/slot.json: {"version", "security_counter", "model",
# "manifest_sha256"}, written last by the installer.
import sys
import json

BOOT_STATE = "boot.json"
SLOTS = ("a", "b")
MAX_EVENTS = 8


class BootError(OSError):
    pass


def other(slot):
    return SLOTS[1 - SLOTS.index(slot)]


def default_state():
    return {"active": "a", "floor": 0, "trial": None, "events": []}


def read_state(state_dir):
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
    if not isinstance(st, dict) or st.get("active") not in SLOTS:
        st = default_state()
        st["corrupt"] = True
    st.setdefault("floor", 0)
    st.setdefault("trial", None)
    st.setdefault("events", [])
    return st


def write_state(state_dir, st):
    # board.compat is firmware (frozen with the HAL), so the loader may use it.
    from board.compat import write_atomic

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


def slot_has_app(path):
    import os

    try:
        names = os.listdir(path + "/agent")
    except OSError:
        return False
    return "main.mpy" in names or "main.py" in names


def slot_bootable(path, floor):
    # A complete install (slot.json is written last, removed first) with an
    # app, whose security counter is not below the floor.
    info = slot_info(path)
    if info is None or not slot_has_app(path):
        return False
    return info.get("security_counter", 0) >= floor


def decide(st, reset_reason, now, mounts):
    # Pure decision: returns (slot, trial, changed). May rewrite st in place
    # (attempt counting, rollback). `trial` is True when booting a trial.
    trial = st.get("trial")
    floor = st.get("floor", 0)
    if trial:
        reason = None
        if trial.get("health"):
            reason = "health check failed: %s" % trial["health"]
        elif reset_reason == "watchdog" and trial.get("attempts", 0) > 0:
            reason = "watchdog reset during trial boot"
        elif trial.get("attempts", 0) >= trial.get("max_attempts", 3):
            reason = "no confirmation after %d boots" % trial.get("attempts", 0)
        elif not slot_bootable(mounts["slot_" + trial["slot"]], floor):
            reason = "trial slot not bootable"
        if reason:
            st["trial"] = None
            # Remember the package that failed so it is not installed again.
            failed = st.get("failed") or []
            if trial.get("manifest_sha256"):
                failed.append(trial["manifest_sha256"])
            st["failed"] = failed[-MAX_EVENTS:]
            add_event(st, {"type": "rolled_back", "slot": trial["slot"], "version": trial.get("version"),
                           "reason": reason, "time": int(now)})
        else:
            trial["attempts"] = trial.get("attempts", 0) + 1
            return trial["slot"], True, True
        slot, _, _ = _plain(st, mounts, now)
        return slot, False, True
    return _plain(st, mounts, now)


def _plain(st, mounts, now):
    # Boot the active slot, or the other one when the active is not bootable.
    floor = st.get("floor", 0)
    slot = st["active"]
    if slot_bootable(mounts["slot_" + slot], floor):
        return slot, False, False
    alt = other(slot)
    if slot_bootable(mounts["slot_" + alt], floor):
        add_event(st, {"type": "fallback", "slot": alt, "reason": "slot %s not bootable" % slot, "time": int(now)})
        st["active"] = alt
        return alt, False, True
    raise BootError("no bootable application in either slot")


def boot(board):
    mounts = board.mounts()
    st = read_state(mounts["state"])
    slot, trial, changed = decide(st, board.reset_reason(), board.time(), mounts)
    if changed:
        # Persist the attempt count BEFORE running the trial slot, so a
        # crash in it still counts.
        write_state(mounts["state"], st)
    if trial:
        print("loader: trial boot of slot %s (attempt %d)" % (slot, st["trial"]["attempts"]))
    path = mounts["slot_" + slot]
    sys.path.insert(0, path)
    import agent.main

    agent.main.run(board, slot, trial=trial)
