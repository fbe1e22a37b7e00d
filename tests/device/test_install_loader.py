# Trial boot decisions of the loader: count, roll back, respect the floor.
import json
import devtest
from install_helpers import package, index, mounts
from updater import loader
from updater.install.installer import Installer
from updater.install.source import FileSource

NOW = 1790000000


def _trial(m):
    inst = Installer(m, "pump-v2")
    inst.install(FileSource(package("pump-1.0.0")), "t", index()["pump-1.0.0"]["manifest_sha256"])
    inst.activate(NOW, deadline_s=300, max_attempts=3)
    return inst


def test_trial_attempts_are_counted_then_rolled_back():
    m = mounts()
    _trial(m)
    for attempt in (1, 2, 3):
        st = loader.read_state(m["state"])
        slot, trial, changed = loader.decide(st, "crash", NOW + attempt, m)
        assert (slot, trial) == ("b", True) and st["trial"]["attempts"] == attempt
        loader.write_state(m["state"], st)
    st = loader.read_state(m["state"])
    slot, trial, changed = loader.decide(st, "crash", NOW + 5, m)
    assert not trial and st["trial"] is None and slot == "a"
    ev = st["events"][-1]
    assert ev["type"] == "rolled_back" and "no confirmation after 3 boots" in ev["reason"]


def test_watchdog_reset_during_trial_rolls_back_at_once():
    m = mounts()
    _trial(m)
    st = loader.read_state(m["state"])
    loader.decide(st, "soft", NOW + 1, m)
    slot, trial, _ = loader.decide(st, "watchdog", NOW + 2, m)
    assert not trial and st["events"][-1]["reason"] == "watchdog reset during trial boot"


def test_deadline_passed_rolls_back():
    m = mounts()
    _trial(m)
    st = loader.read_state(m["state"])
    slot, trial, _ = loader.decide(st, "soft", NOW + 301, m)
    assert not trial and "deadline" in st["events"][-1]["reason"]


def test_floor_blocks_an_old_slot():
    m = mounts()
    _trial(m)
    st = loader.read_state(m["state"])
    st["trial"] = None
    st["active"] = "b"
    st["floor"] = 5  # slot b holds counter 1
    assert not loader.slot_bootable(m["slot_b"], 5)
    devtest.raises(loader.BootError, loader.decide, st, "soft", NOW, m)


def test_unbootable_active_falls_back_to_the_other_slot():
    m = mounts()
    _trial(m)
    st = loader.read_state(m["state"])
    st["trial"] = None  # slot a is empty, slot b holds 1.0.0
    slot, trial, changed = loader.decide(st, "power_on", NOW, m)
    assert (slot, trial, changed) == ("b", False, True) and st["active"] == "b"


def test_corrupt_boot_state_is_reported_not_fatal():
    m = mounts()
    with open(m["state"] + "/boot.json", "w") as f:
        f.write("[1, 2")
    st = loader.read_state(m["state"])
    assert st["corrupt"] and st["active"] == "a"
    with open(m["state"] + "/boot.json", "w") as f:
        f.write(json.dumps(["not", "a", "dict"]))
    assert loader.read_state(m["state"])["corrupt"]
