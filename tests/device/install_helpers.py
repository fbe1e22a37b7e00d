# Shared set-up for the installer's device tests (common subset).
import os
import json
import devtest


def package(name):
    return devtest.data_path("install/%s.mspk" % name)


def index():
    with open(devtest.data_path("install/index.json")) as f:
        return json.loads(f.read())


def mounts():
    # A device's flash areas as plain directories.
    root = devtest.tmpdir()
    m = {}
    for name in ("state", "slot_a", "slot_b", "data"):
        os.mkdir(root + "/" + name)
        m[name] = root + "/" + name
    return m


def read(path):
    with open(path, "rb") as f:
        return f.read()
