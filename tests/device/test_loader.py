# The flash loader picks the slot to boot from the boot state.
import json
import os
import sys
import devtest
from updater import bootstate, loader


def _slot(root, name, with_app):
    path = root + "/" + name
    os.mkdir(path)
    if with_app:
        os.mkdir(path + "/agent")
        with open(path + "/agent/main.mpy", "wb") as f:
            f.write(b"M")
    return path


def test_missing_state_means_slot_a():
    assert bootstate.read_state(devtest.tmpdir())["active"] == "a"


def test_state_names_the_active_slot():
    d = devtest.tmpdir()
    with open(d + "/boot.json", "w") as f:
        f.write('{"active": "b"}')
    assert bootstate.read_state(d)["active"] == "b"


def test_garbage_state_boots_a_and_says_so():
    d = devtest.tmpdir()
    with open(d + "/boot.json", "w") as f:
        f.write('{"active": ')
    st = bootstate.read_state(d)
    assert st["active"] == "a" and st["corrupt"]
    with open(d + "/boot.json", "w") as f:
        f.write('{"active": "z"}')
    assert bootstate.read_state(d)["active"] == "a"


def test_slot_has_app():
    d = devtest.tmpdir()
    assert loader.slot_has_app(_slot(d, "full", True))
    assert not loader.slot_has_app(_slot(d, "empty", False))


# -- boot state format and the declared entry ------------------------------------

NOW = 1790000000


def _mounts():
    d = devtest.tmpdir()
    m = {"state": d + "/state"}
    os.mkdir(m["state"])
    return d, m


def _app_slot(d, m, slot, counter, entry="fmtapp.main", module="fmtapp/main"):
    # A complete slot whose entry module records how it was started (not
    # named agent: CPython runs these tests in the process that holds the
    # real agent package).
    path = d + "/slot_" + slot
    m["slot_" + slot] = path
    os.mkdir(path)
    parts = module.split("/")
    for i in range(1, len(parts)):
        os.mkdir(path + "/" + "/".join(parts[:i]))
        with open(path + "/" + "/".join(parts[:i]) + "/__init__.py", "w") as f:
            f.write("")
    with open(path + "/" + module + ".py", "w") as f:
        f.write("STARTED = []\n\ndef run(board, slot, trial=False):\n    STARTED.append((slot, trial))\n")
    info = {"version": "1.0.0", "security_counter": counter, "model": "pump-v2", "manifest_sha256": slot * 64}
    if entry is not None:
        info["entry"] = entry
    with open(path + "/slot.json", "w") as f:
        f.write(json.dumps(info))
    return path


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _read(path):
    with open(path) as f:
        return f.read()


class _Board:
    # The three board calls the loader makes.
    def __init__(self, m, reason):
        self.m = m
        self.reason = reason

    def mounts(self):
        return self.m

    def reset_reason(self):
        return self.reason

    def time(self):
        return NOW


def _boot(m, reason, entry):
    # loader.boot() as rom_main runs it; returns what the started app saw.
    # The entry's package may already be imported in this process (the
    # repository's own agent, by another test): set it aside so the slot's
    # copy is the one started, and put it back afterwards.
    top = entry.split(".")[0]
    path_before = list(sys.path)
    saved = {}
    for name in list(sys.modules):
        if name == top or name.startswith(top + "."):
            saved[name] = sys.modules.pop(name)
    try:
        loader.boot(_Board(m, reason))
        return sys.modules[entry].STARTED
    finally:
        sys.path[:] = path_before
        for name in list(sys.modules):
            if name == top or name.startswith(top + "."):
                del sys.modules[name]
        sys.modules.update(saved)


def test_state_written_carries_the_format():
    d, m = _mounts()
    st = bootstate.read_state(m["state"])
    bootstate.write_state(m["state"], st)
    assert json.loads(_read(m["state"] + "/boot.json"))["format"] == bootstate.FORMAT
    # A file from before the field existed is format 1.
    _write(m["state"] + "/boot.json", '{"active": "b", "floor": 2}')
    st = bootstate.read_state(m["state"])
    assert st["format"] == 1 and st["active"] == "b" and "unknown_format" not in st
    for bad in ('"2"', "0", "true", "1.5"):
        _write(m["state"] + "/boot.json", '{"format": %s, "active": "b"}' % bad)
        assert bootstate.read_state(m["state"])["corrupt"]


def test_old_loader_boots_the_confirmed_slot_of_a_newer_boot_state():
    # The factory loader is never updated: a boot.json written by a newer
    # app in a format it does not know must not make it run a trial (or
    # anything but the confirmed slot), and it must not rewrite the file.
    d, m = _mounts()
    _app_slot(d, m, "a", 3)
    _app_slot(d, m, "b", 3)
    newer = json.dumps({"format": bootstate.FORMAT + 1, "active": "b", "floor": 3,
                        "trial": {"slot": "a", "attempts": 0, "max_attempts": 3},
                        "pending": {"slot": "a"}, "events": "moved elsewhere"})
    _write(m["state"] + "/boot.json", newer)
    st = bootstate.read_state(m["state"])
    assert st["unknown_format"] == bootstate.FORMAT + 1
    assert loader.decide(st, "soft", NOW, m) == ("b", False, False)
    assert _boot(m, "soft", "fmtapp.main") == [("b", False)]
    assert _read(m["state"] + "/boot.json") == newer
    # Nothing in this code writes it back in the older format.
    devtest.raises(bootstate.BootError, bootstate.write_state, m["state"], st)
    assert _read(m["state"] + "/boot.json") == newer


def test_newer_boot_state_keeps_the_floor():
    # "floor" means the same in every format: a slot below it never boots.
    d, m = _mounts()
    _app_slot(d, m, "a", 5)
    _app_slot(d, m, "b", 2)
    _write(m["state"] + "/boot.json", json.dumps({"format": 7, "active": "b", "floor": 5}))
    assert loader.decide(bootstate.read_state(m["state"]), "soft", NOW, m)[0] == "a"
    # A floor this loader cannot read: never a brick, never below the
    # highest security counter installed (the floor never exceeds it).
    _write(m["state"] + "/boot.json", json.dumps({"format": 7, "active": "b", "floor": "high"}))
    assert loader.decide(bootstate.read_state(m["state"]), "soft", NOW, m)[0] == "a"
    d, m = _mounts()
    _app_slot(d, m, "a", 2)
    _app_slot(d, m, "b", 5)
    _write(m["state"] + "/boot.json", json.dumps({"format": 7, "active": "a", "floor": [5]}))
    assert loader.decide(bootstate.read_state(m["state"]), "soft", NOW, m)[0] == "b"


def test_loader_starts_the_entry_the_slot_declares():
    d, m = _mounts()
    _app_slot(d, m, "a", 1, entry="pumpapp.start", module="pumpapp/start")
    assert loader.slot_bootable(m["slot_a"], 0)
    assert not loader.slot_has_app(m["slot_a"])  # no agent/main in it
    assert _boot(m, "power_on", "pumpapp.start") == [("a", False)]


def test_invalid_or_missing_entry_is_not_bootable():
    d, m = _mounts()
    _app_slot(d, m, "a", 1, entry="pumpapp.start", module="pumpapp/start")
    _app_slot(d, m, "b", 1, entry="otherapp.main", module="otherapp/main")
    for bad in ("../x", "os;x", "", "a..b", 7, "1x.y"):
        info = json.loads(_read(m["slot_a"] + "/slot.json"))
        info["entry"] = bad
        _write(m["slot_a"] + "/slot.json", json.dumps(info))
        assert not loader.slot_bootable(m["slot_a"], 0)
    # Declared but absent from the slot: the other slot boots instead.
    info["entry"] = "pumpapp.gone"
    _write(m["slot_a"] + "/slot.json", json.dumps(info))
    assert _boot(m, "power_on", "otherapp.main") == [("b", False)]
