# Helpers for device tests. Device tests are plain `test_*()` functions with
# `assert`; tests/device/conftest.py runs each one on CPython and on the
# MicroPython VM under the heap cap. This module must stay in the common subset.
import os
import sys

RUNTIME = sys.implementation.name  # "cpython" or "micropython"
_counter = [0]


class SkipTest(Exception):
    pass


def skip(reason):
    raise SkipTest(reason)


def raises(exc_class, fn, *args, **kwargs):
    """Call fn and return the exception it raised; fail if it raised nothing
    or something of another class."""
    try:
        fn(*args, **kwargs)
    except exc_class as e:
        return e
    raise AssertionError("expected %s from %r" % (exc_class.__name__, fn))


def tmpdir():
    """A fresh empty directory on the host file system for this test."""
    base = os.getenv("MEDSENTRY_TEST_TMP") or "/tmp"
    _counter[0] += 1
    path = "%s/t%d" % (base, _counter[0])
    _mkdirs(path)
    return path


def _mkdirs(path):
    cur = ""
    for part in path.split("/"):
        if not part:
            cur = "/" if not cur else cur
            continue
        cur = cur + part if cur.endswith("/") else cur + "/" + part
        try:
            os.mkdir(cur)
        except OSError:
            pass


def data_path(name):
    """Path of a fixture under tests/device/data/."""
    here = os.getenv("MEDSENTRY_DEVICE_TESTS") or "tests/device"
    return here + "/data/" + name


def repo_path(name):
    """Path of a file elsewhere in the repository (e.g. the one sealing vector,
    host_tools/collector/sealing_vector.json): read-only data, never imported."""
    here = os.getenv("MEDSENTRY_DEVICE_TESTS") or "tests/device"
    return here + "/../../" + name


def reset_events():
    # A fresh agent start for agent/security/events.py: no sink, nothing
    # pending, zero counts (kept here: the device module stays resident).
    from agent.security import events

    events._sink = None
    del events._pending[:]
    for k in events.stats:
        events.stats[k] = 0


def reset_netguard():
    # board/netguard.py disarmed, its counts forgotten.
    from board import netguard

    st = netguard._state
    st["armed"] = False
    st["base"] = []
    st["narrow"] = None
    st["blocked"] = 0
    st["on_block"] = None
    st["installed"] = False
    netguard._endpoints.clear()
