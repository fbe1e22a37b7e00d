# Trial boot decisions of the loader: count, roll back, respect the floor.
import json
import devtest
from install_helpers import package, index, mounts
from updater import bootstate, loader
from updater.install.installer import Installer
from updater.install.source import FileSource

NOW = 1790000000


def _rolled_back(st):
    evs = [e for e in st["events"] if e["type"] == "rolled_back"]
    return evs[-1] if evs else None


def _trial(m):
    inst = Installer(m, "pump-v2")
    inst.install(FileSource(package("pump-1.0.0")), "t", index()["pump-1.0.0"]["manifest_sha256"])
    inst.activate(NOW, deadline_s=300, max_attempts=3)
    return inst


def _running_then_trial(m):
    # 1.0.0 confirmed in slot b (what runs), then 1.1.0 on trial in slot a.
    inst = _trial(m)
    st = bootstate.read_state(m["state"])
    loader.decide(st, "soft", NOW, m)
    bootstate.write_state(m["state"], st)
    inst.confirm(NOW)
    inst = Installer(m, "pump-v2")
    inst.install(FileSource(package("pump-1.1.0")), "t2", index()["pump-1.1.0"]["manifest_sha256"])
    inst.activate(NOW, deadline_s=300, max_attempts=3)


def test_trial_attempts_are_counted_then_rolled_back():
    m = mounts()
    _running_then_trial(m)
    for attempt in (1, 2, 3):
        st = bootstate.read_state(m["state"])
        slot, trial, changed = loader.decide(st, "crash", NOW + attempt, m)
        assert (slot, trial) == ("a", True) and st["trial"]["attempts"] == attempt
        bootstate.write_state(m["state"], st)
    st = bootstate.read_state(m["state"])
    slot, trial, changed = loader.decide(st, "crash", NOW + 5, m)
    assert not trial and st["trial"] is None and slot == "b"
    ev = st["events"][-1]
    assert ev["type"] == "rolled_back" and "no confirmation after 3 boots" in ev["reason"]
    assert index()["pump-1.1.0"]["manifest_sha256"] in st["failed"]


def test_rollback_with_nothing_else_to_boot_keeps_the_device_alive():
    # First install on an empty device fails its trial: slot a holds nothing,
    # so the loader falls back to the only application rather than brick.
    m = mounts()
    _trial(m)
    st = bootstate.read_state(m["state"])
    loader.decide(st, "soft", NOW, m)
    slot, trial, _ = loader.decide(st, "watchdog", NOW + 1, m)
    assert (slot, trial) == ("b", False)
    assert [e["type"] for e in st["events"]][-2:] == ["rolled_back", "fallback"]


def test_watchdog_reset_during_trial_rolls_back_at_once():
    m = mounts()
    _trial(m)
    st = bootstate.read_state(m["state"])
    loader.decide(st, "soft", NOW + 1, m)
    slot, trial, _ = loader.decide(st, "watchdog", NOW + 2, m)
    assert not trial and _rolled_back(st)["reason"] == "watchdog reset during trial boot"


def test_power_off_past_the_deadline_does_not_roll_back_a_good_release():
    # The deadline counts trial uptime (enforced by the agent), not calendar
    # time: a device left off for a day still gets its trial boot.
    m = mounts()
    _trial(m)
    st = bootstate.read_state(m["state"])
    slot, trial, _ = loader.decide(st, "power_on", NOW + 86400, m)
    assert trial and slot == "b" and st["trial"]["attempts"] == 1


def test_floor_blocks_an_old_slot():
    m = mounts()
    _trial(m)
    st = bootstate.read_state(m["state"])
    st["trial"] = None
    st["active"] = "b"
    st["floor"] = 5  # slot b holds counter 1
    assert not loader.slot_bootable(m["slot_b"], 5)
    devtest.raises(loader.BootError, loader.decide, st, "soft", NOW, m)


def test_unbootable_active_falls_back_to_the_other_slot():
    m = mounts()
    _trial(m)
    st = bootstate.read_state(m["state"])
    st["trial"] = None  # slot a is empty, slot b holds 1.0.0
    slot, trial, changed = loader.decide(st, "power_on", NOW, m)
    assert (slot, trial, changed) == ("b", False, True) and st["active"] == "b"


def test_corrupt_boot_state_is_reported_not_fatal():
    m = mounts()
    with open(m["state"] + "/boot.json", "w") as f:
        f.write("[1, 2")
    st = bootstate.read_state(m["state"])
    assert st["corrupt"] and st["active"] == "a"
    with open(m["state"] + "/boot.json", "w") as f:
        f.write(json.dumps(["not", "a", "dict"]))
    assert bootstate.read_state(m["state"])["corrupt"]
