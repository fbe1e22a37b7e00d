# Install a package and confirm it (the firmware that runs before an update).
#   install_base.py IMAGE PACKAGE MANIFEST_SHA256
import sys
from board.sim import flash
from updater import bootstate, loader
from updater.install.installer import Installer
from updater.install.source import FileSource

img = flash.ImageFile(sys.argv[1])
m = flash.mount_all(img)
inst = Installer(m, "pump-v2")
inst.install(FileSource(sys.argv[2]), "pump-v2/base.mspk", sys.argv[3])
inst.activate(0)
st = bootstate.read_state(m["state"])
loader.decide(st, "soft", 1, m)
bootstate.write_state(m["state"], st)
print("CONFIRMED", inst.confirm(2))
