# Runs on the MicroPython VM against a sim flash image: phases of an update
# cycle, each one a "boot" (flash mounted afresh), with one power-cut counter
# across all of them (MEDSENTRY_POWERCUT_AT counts every flash write).
#   factory IMG PKG SHA        format, install PKG and confirm it (old firmware)
#   cycle IMG ok|fail PKG SHA  install PKG + activate, then the trial boot:
#                              ok: confirms; fail: health check fails, the next
#                              boot rolls back
#   recover IMG ok|fail PKG SHA  after a cut: print the state the next boot
#                              sees, carry on as the device would, print again
# Prints "STATE {...}" lines and "WRITES n" at the end.
import sys
import json
import os
import vfs
from board.sim import flash
from updater import bootstate, loader
from updater.install.installer import Installer
from updater.install.source import FileSource
from updater.install import slot as slotops

NOW = 1790000000
AREAS = ("loader", "slot_a", "slot_b", "state", "data")


class Flash:
    def __init__(self, path, fresh=False):
        self.counter = flash.WriteCounter(cut_at=int(os.getenv("MEDSENTRY_POWERCUT_AT") or "0"),
                                          hit_path=path + ".hit")
        self.img = flash.ImageFile(path, self.counter)
        if fresh:
            for name, _, _ in self.img.parts:
                flash.mkfs(self.img.partition(name))
        self.m = None

    def boot(self):
        # A reboot as littlefs sees it: unmount everything, mount again.
        if self.m:
            for a in AREAS:
                vfs.umount("/" + a)
        self.m = flash.mount_all(self.img)
        return self.m


def decide(m):
    st = bootstate.read_state(m["state"])
    slot, trial, changed = loader.decide(st, "soft", NOW + 10, m)
    if changed:
        bootstate.write_state(m["state"], st)
    return trial


def install(m, pkg, sha):
    inst = Installer(m, "pump-v2")
    if bootstate.read_state(m["state"]).get("trial") is None and not inst.installed():
        inst.install(FileSource(pkg), "pump-v2/x.mspk", sha)
    if inst.installed():
        inst.activate(NOW)


def trial_boot(fl, ok):
    m = fl.boot()
    if decide(m):
        if ok:
            Installer(m, "pump-v2").confirm(NOW + 20)
        else:
            st = bootstate.read_state(m["state"])
            st["trial"]["health"] = "self-test failed"
            bootstate.write_state(m["state"], st)
            decide(fl.boot())  # the reboot that rolls back


def state(m):
    st = bootstate.read_state(m["state"])
    probe = json.loads(json.dumps(st))
    slot, trial, changed = loader.decide(probe, "soft", NOW + 10, m)
    info = bootstate.slot_info(m["slot_" + slot])
    with open(m["slot_" + slot] + "/manifest.json") as f:
        man = json.loads(f.read())
    slotops.verify(m["slot_" + slot], man, bytearray(512))  # raises if mixed
    return {"boots": slot, "version": info["version"], "active": st["active"],
            "pending_trial": st["trial"] is not None, "corrupt": bool(st.get("corrupt")),
            "floor": st["floor"], "journal": Installer(m, "pump-v2").reconcile() is not None,
            "last_event": (st["events"] or [{}])[-1].get("type")}


def main():
    mode, path = sys.argv[1], sys.argv[2]
    fl = Flash(path, fresh=(mode == "factory"))
    if mode == "factory":
        m = fl.boot()
        install(m, sys.argv[3], sys.argv[4])
        decide(fl.boot())
        Installer(fl.m, "pump-v2").confirm(NOW + 20)
    elif mode == "cycle":
        ok = sys.argv[3] == "ok"
        install(fl.boot(), sys.argv[4], sys.argv[5])
        trial_boot(fl, ok)
    elif mode == "recover":
        ok = sys.argv[3] == "ok"
        m = fl.boot()
        st = state(m)
        print("STATE", json.dumps(st))
        for _ in range(3):
            if st["pending_trial"]:
                trial_boot(fl, ok)
            elif st["version"] == "1.0.0" and st["last_event"] != "rolled_back":
                install(fl.boot(), sys.argv[4], sys.argv[5])
                trial_boot(fl, ok)
            else:
                break
            st = state(fl.boot())
        print("STATE", json.dumps(st))
    print("WRITES", fl.counter.count)


main()
