# The boot loader that lives in the flash "loader" partition (deployed there
# as loader.mpy, with bootstate.mpy beside it). It decides which slot boots,
# counts trial boots, rolls back a trial that crashes, hangs or is not
# confirmed in time, and starts the slot's application by the entry name its
# slot.json declares (bootstate.DEFAULT_ENTRY when it declares none): the
# updater package never imports the application.
#
# The boot state file and slot.json are described in bootstate.py. A boot
# state in a format newer than this loader knows (the factory loader is never
# updated) boots the confirmed slot, with no trial, and is not written back.
import sys

try:
    import bootstate  # the loader partition: bootstate.mpy beside loader.mpy
except ImportError:
    from updater import bootstate  # the source tree (tests, host tools)

BootError = bootstate.BootError


def slot_has_app(path, entry=bootstate.DEFAULT_ENTRY):
    # The slot holds the entry module ("agent.main": agent/main.mpy or .py).
    import os

    parent, _, name = entry.rpartition(".")
    try:
        names = os.listdir(path + ("/" + parent.replace(".", "/") if parent else ""))
    except OSError:
        return False
    return name + ".mpy" in names or name + ".py" in names


def slot_bootable(path, floor):
    # A complete install (slot.json is written last, removed first) with an
    # app, whose security counter is not below the floor.
    info = bootstate.slot_info(path)
    entry = bootstate.entry_of(info)
    if info is None or entry is None or not slot_has_app(path, entry):
        return False
    return info.get("security_counter", 0) >= floor


def decide(st, reset_reason, now, mounts):
    # Pure decision: returns (slot, trial, changed). May rewrite st in place
    # (attempt counting, rollback). `trial` is True when booting a trial.
    if st.get("unknown_format"):
        # Only "active" and "floor" are understood: boot the confirmed slot
        # (the other one only when it is not bootable, as always), and never
        # write (a rewrite would lose what the newer format holds).
        slot, _, _ = _plain(st, mounts, now)
        return slot, False, False
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
            st["failed"] = failed[-bootstate.MAX_EVENTS:]
            bootstate.add_event(st, {"type": "rolled_back", "slot": trial["slot"], "version": trial.get("version"),
                           "reason": reason, "time": int(now)})
        else:
            trial["attempts"] = trial.get("attempts", 0) + 1
            return trial["slot"], True, True
        slot, _, _ = _plain(st, mounts, now)
        return slot, False, True
    return _plain(st, mounts, now)


def _highest_counter(mounts):
    # The highest security counter among the bootable slots.
    best = 0
    for s in ("a", "b"):
        path = mounts["slot_" + s]
        if slot_bootable(path, 0):
            best = max(best, bootstate.slot_info(path).get("security_counter", 0))
    return best


def _plain(st, mounts, now):
    # Boot the active slot, or the other one when the active is not bootable.
    floor = st.get("floor", 0)
    if st.get("floor_unknown"):
        floor = _highest_counter(mounts)
    slot = st["active"]
    if slot_bootable(mounts["slot_" + slot], floor):
        return slot, False, False
    alt = bootstate.other(slot)
    if slot_bootable(mounts["slot_" + alt], floor):
        bootstate.add_event(st, {"type": "fallback", "slot": alt, "reason": "slot %s not bootable" % slot, "time": int(now)})
        st["active"] = alt
        return alt, False, True
    raise BootError("no bootable application in either slot")


def boot(board):
    mounts = board.mounts()
    st = bootstate.read_state(mounts["state"])
    if st.get("unknown_format"):
        print("loader: boot state format %d is newer than this loader (format %d): booting confirmed slot %s"
              % (st["unknown_format"], bootstate.FORMAT, st["active"]))
    slot, trial, changed = decide(st, board.reset_reason(), board.time(), mounts)
    if changed:
        # Persist the attempt count BEFORE running the trial slot, so a
        # crash in it still counts.
        bootstate.write_state(mounts["state"], st)
    if trial:
        print("loader: trial boot of slot %s (attempt %d)" % (slot, st["trial"]["attempts"]))
    path = mounts["slot_" + slot]
    entry = bootstate.entry_of(bootstate.slot_info(path))  # valid: the slot is bootable
    sys.path.insert(0, path)
    app = start(entry)
    app.run(board, slot, trial=trial)


def start(entry):
    # Import the module named `entry` ("pkg.mod") and return it.
    mod = __import__(entry)
    for part in entry.split(".")[1:]:
        mod = getattr(mod, part)
    return mod
