# Factory programming of a simulated board's flash, run on the MicroPython VM
# by the host (host_tools/sim/image.py): format the littlefs partitions and
# copy host directory trees into them. Arguments: a JSON file
#   {"image": path, "format": [partition names],
#    "install": {partition: host_dir, ...}, "clear": [partition names]}
import os
import sys
import json

from board.compat import write_atomic
from board.sim import flash as simflash

ENOSPC = 28
EEXIST = 17


def _is_dir(path):
    return os.stat(path)[0] & 0x4000 != 0


def copy_tree(src, dst):
    # Copy a host directory tree into a mounted partition, file by file, in
    # bounded chunks (the heap is small).
    buf = bytearray(2048)
    mv = memoryview(buf)
    count = 0
    for name in sorted(os.listdir(src)):
        s = src + "/" + name
        d = dst + "/" + name
        if _is_dir(s):
            try:
                os.mkdir(d)
            except OSError as e:
                # An existing directory is fine; a full partition is not (the
                # files below would then fail as "no such directory").
                if not (e.args and e.args[0] == EEXIST):
                    raise
            count += copy_tree(s, d)
            continue
        with open(s, "rb") as fi:
            with open(d + ".tmp", "wb") as fo:
                while True:
                    n = fi.readinto(buf)
                    if not n:
                        break
                    fo.write(mv[:n])
        os.rename(d + ".tmp", d)
        count += 1
    return count


def remove_tree(path):
    for name in os.listdir(path):
        p = path + "/" + name
        if _is_dir(p):
            remove_tree(p)
            os.rmdir(p)
        else:
            os.remove(p)


def main(spec_path):
    with open(spec_path) as f:
        spec = json.loads(f.read())
    image = simflash.ImageFile(spec["image"])
    for name in spec.get("format", []):
        simflash.mkfs(image.partition(name))
    mounts = simflash.mount_all(image)
    for name in spec.get("clear", []):
        remove_tree(mounts[name])
    installed = {}
    for name, src in spec.get("install", {}).items():
        try:
            installed[name] = copy_tree(src, mounts[name])
        except OSError as e:
            if e.args and e.args[0] == ENOSPC:
                print("FACTORY ERROR: partition %s is full: %s does not fit; this flash is too small"
                      " for the release (every file takes at least one 4 KiB block)" % (name, src))
                sys.exit(1)
            raise
    for name, content in spec.get("files", {}).items():
        # {"state/boot.json": "<content>"} small files written atomically
        part, rel = name.split("/", 1)
        write_atomic(mounts[part] + "/" + rel, content)
    print("FACTORY OK", json.dumps(installed), "writes", image.counter.count)


if __name__ == "__main__":
    main(sys.argv[1])
