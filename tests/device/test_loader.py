# The flash loader picks the slot to boot from the boot state.
import os
import devtest
from updater import loader


def _slot(root, name, with_app):
    path = root + "/" + name
    os.mkdir(path)
    if with_app:
        os.mkdir(path + "/agent")
        with open(path + "/agent/main.mpy", "wb") as f:
            f.write(b"M")
    return path


def test_missing_state_means_slot_a():
    assert loader.read_state(devtest.tmpdir())["active"] == "a"


def test_state_names_the_active_slot():
    d = devtest.tmpdir()
    with open(d + "/boot.json", "w") as f:
        f.write('{"active": "b"}')
    assert loader.read_state(d)["active"] == "b"


def test_garbage_state_boots_a_and_says_so():
    d = devtest.tmpdir()
    with open(d + "/boot.json", "w") as f:
        f.write('{"active": ')
    st = loader.read_state(d)
    assert st["active"] == "a" and st["corrupt"]
    with open(d + "/boot.json", "w") as f:
        f.write('{"active": "z"}')
    assert loader.read_state(d)["active"] == "a"


def test_slot_has_app():
    d = devtest.tmpdir()
    assert loader.slot_has_app(_slot(d, "full", True))
    assert not loader.slot_has_app(_slot(d, "empty", False))
