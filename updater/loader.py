# The boot loader that lives in the flash "loader" partition (deployed as
# loader.mpy). It reads the boot state from the state partition and starts
# the application from the active slot.
#
# Boot state, /state/boot.json, saved atomically (temp file + rename):
#   {"active": "a" | "b"}
# The installer (updater/) grows this with trial-boot fields; the loader is
# kept small because it is the one piece that is rarely updated.
import sys
import json

BOOT_STATE = "boot.json"
SLOTS = ("a", "b")


class BootError(OSError):
    pass


def read_state(state_dir):
    try:
        with open(state_dir + "/" + BOOT_STATE) as f:
            st = json.loads(f.read())
    except OSError:
        return {"active": "a"}
    except ValueError:
        # A torn or corrupt file cannot happen with temp+rename on littlefs;
        # if it does anyway, boot slot A rather than brick.
        return {"active": "a", "corrupt": True}
    if st.get("active") not in SLOTS:
        st["active"] = "a"
    return st


def slot_has_app(path):
    import os

    try:
        names = os.listdir(path + "/agent")
    except OSError:
        return False
    return "main.mpy" in names or "main.py" in names


def boot(board):
    mounts = board.mounts()
    st = read_state(mounts["state"])
    slot = st["active"]
    path = mounts["slot_" + slot]
    if not slot_has_app(path):
        other = SLOTS[1 - SLOTS.index(slot)]
        if not slot_has_app(mounts["slot_" + other]):
            raise BootError("no application in either slot")
        print("loader: slot %s has no application, booting slot %s" % (slot, other))
        slot = other
        path = mounts["slot_" + slot]
    sys.path.insert(0, path)
    import agent.main

    agent.main.run(board, slot)
