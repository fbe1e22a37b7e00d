# The compat shim behaves the same on both runtimes.
import devtest
from board import compat


def test_const_is_identity():
    assert compat.const(7) == 7


def test_ticks_advance():
    a = compat.ticks_ms()
    compat.sleep_ms(5)
    assert compat.ticks_diff(compat.ticks_ms(), a) >= 4


def test_write_atomic_replaces_file():
    d = devtest.tmpdir()
    p = d + "/state.json"
    compat.write_atomic(p, b"one")
    compat.write_atomic(p, b"two")
    with open(p, "rb") as f:
        assert f.read() == b"two"
    assert not compat.path_exists(p + ".tmp")


def test_heap_cap_enforced():
    # Under the 256 KiB cap a 1 MiB allocation must fail on MicroPython.
    if devtest.RUNTIME != "micropython":
        devtest.skip("heap cap applies to the MicroPython VM")
    try:
        buf = bytearray(1024 * 1024)
    except MemoryError:
        return
    raise AssertionError("allocated %d bytes above the heap cap" % len(buf))


def test_asyncio_comes_from_compat_on_first_use():
    import sys

    if devtest.RUNTIME == "micropython":
        # Importing the shim does not load the event loop (the loader and the
        # updater import compat and never run one).
        assert "asyncio" not in sys.modules
    from board.compat import asyncio
    import asyncio as direct

    assert asyncio is direct and compat.asyncio is direct
    assert asyncio.run is not None and asyncio.sleep is not None
    devtest.raises(AttributeError, getattr, compat, "no_such_name")
