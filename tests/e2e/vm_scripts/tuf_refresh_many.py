# Device TUF client (updater.tuf.client_main) against many repositories in one
# VM run: for each line "METADATA_DIR TRUSTED_ROOT URL" of the file argv[1],
# init with the trusted root, then refresh from URL/metadata (whole root chain,
# timestamp, snapshot, targets) and download TARGET if a fourth field names one.
# Prints "CASE <dir> <init rc> <refresh rc>" per line.
import gc
import sys

from updater.tuf.client_main import main

with open(sys.argv[1]) as f:
    lines = f.read().split("\n")
for line in lines:
    parts = line.split()
    if not parts:
        continue
    mdir, root, url = parts[0], parts[1], parts[2]
    rc_init = main(["--metadata-dir", mdir, "init", root])
    args = ["--metadata-dir", mdir, "--metadata-url", url + "/metadata"]
    if len(parts) > 3:
        args += ["--target-base-url", url + "/targets", "--target-dir", mdir + "-dl",
                 "--target-name", parts[3], "download"]
    else:
        args.append("refresh")
    rc = main(args) if rc_init == 0 else 1
    print("CASE", mdir, rc_init, rc)
    gc.collect()
