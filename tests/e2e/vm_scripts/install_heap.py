# Install a package into a sim flash image on the MicroPython VM and report
# heap use: the allocated heap at idle (after imports), the lowest free heap
# seen during the install, and success.
#   install_heap.py IMAGE PACKAGE MANIFEST_SHA256 [measure|fragment]
# With "measure", every progress call collects garbage first, so the lowest
# free heap seen is the live peak (at those moments); without it the install
# runs as on the device and only success counts. With "fragment", the heap is
# first filled with HOLE-byte blocks and every other one freed: half the heap
# is free, but in pieces of HOLE bytes (what a heap looks like after a TUF
# check unloaded its modules between live objects).
import sys
import gc
import json
from board.sim import flash
from updater.install.installer import Installer
from updater.install.source import FileSource

img = flash.ImageFile(sys.argv[1])
m = flash.mount_all(img)
gc.collect()
idle_alloc = gc.mem_alloc()
idle_free = gc.mem_free()
low = [idle_free]


MEASURE = len(sys.argv) > 4 and sys.argv[4] == "measure"
HOLE = 6 * 1024
kept = []
if len(sys.argv) > 4 and sys.argv[4] == "fragment":
    blocks = []
    try:
        while True:
            blocks.append(bytearray(HOLE))
    except MemoryError:
        pass
    kept = blocks[1::2]
    blocks = None
    gc.collect()


def progress(ev):
    if not MEASURE:
        return
    gc.collect()
    f = gc.mem_free()
    if f < low[0]:
        low[0] = f


inst = Installer(m, "pump-v2", progress=progress)
man = inst.install(FileSource(sys.argv[2]), "pump-v2/big.mspk", sys.argv[3])
gc.collect()
print("RESULT", json.dumps({"idle_alloc": idle_alloc, "idle_free": idle_free, "low_free": low[0], "holes": len(kept),
                            "files": len(man["files"]), "version": man["version"]}))
