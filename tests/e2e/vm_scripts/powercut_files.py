# Runs on the MicroPython VM against a flash image (see test_sim_powercut.py).
#   init  IMAGE   format all partitions, write the OLD content of each file
#   write IMAGE   overwrite each file with its NEW content (cut injected by env)
#   check IMAGE   mount and print which content each file holds
import sys
import json
from board.sim import flash

FILES = {"/data/a.bin": (700, 11), "/data/b.bin": (9000, 22), "/state/c.json": (120, 33)}


def content(size, seed, version):
    # Deterministic bytes per file and version, built in small pieces.
    out = bytearray(size)
    x = seed * 7 + version * 131
    for i in range(size):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = x >> 16 & 0xFF
    return bytes(out)


def main(mode, path):
    counter = flash.WriteCounter()
    import os

    cut = int(os.getenv("MEDSENTRY_POWERCUT_AT") or "0")
    counter.cut_at = cut
    counter.hit_path = path + ".hit"
    img = flash.ImageFile(path, counter)
    if mode == "init":
        for name, _, _ in img.parts:
            flash.mkfs(img.partition(name))
    flash.mount_all(img, ["data", "state"])
    if mode in ("init", "write"):
        version = 0 if mode == "init" else 1
        for name in sorted(FILES):
            size, seed = FILES[name]
            with open(name, "wb") as f:
                f.write(content(size, seed, version))
        print("WRITES", counter.count)
        return
    state = {}
    for name in sorted(FILES):
        size, seed = FILES[name]
        try:
            with open(name, "rb") as f:
                got = f.read()
        except OSError:
            state[name] = "missing"
            continue
        if got == content(size, seed, 0):
            state[name] = "old"
        elif got == content(size, seed, 1):
            state[name] = "new"
        else:
            state[name] = "mixed"
    print("STATE", json.dumps(state))


main(sys.argv[1], sys.argv[2])
