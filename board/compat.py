# Tiny shim over what MicroPython and CPython spell differently.
# Device modules import from here instead of guarding each import themselves.
import sys
import time

IS_MICROPYTHON = sys.implementation.name == "micropython"

try:
    from micropython import const  # noqa: F401
except ImportError:  # CPython

    def const(x):
        return x


if IS_MICROPYTHON:
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
    sleep_ms = time.sleep_ms
else:

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, delta):
        return a + delta

    def sleep_ms(ms):
        time.sleep(ms / 1000)


def mem_free():
    """Free heap bytes on MicroPython; None on CPython (no fixed heap)."""
    if IS_MICROPYTHON:
        import gc

        return gc.mem_free()
    return None


def path_exists(path):
    import os

    try:
        os.stat(path)
        return True
    except OSError:
        return False


def rename_atomic(tmp, final):
    # littlefs rename over an existing file is atomic; CPython's os.rename on
    # POSIX is too. MicroPython's VfsPosix rename is rename(2).
    import os

    os.rename(tmp, final)


def write_atomic(path, data):
    """Write bytes or str to path through a temp file + rename."""
    tmp = path + ".tmp"
    mode = "wb" if isinstance(data, (bytes, bytearray, memoryview)) else "w"
    with open(tmp, mode) as f:
        f.write(data)
    rename_atomic(tmp, path)


def format_exception(exc):
    """The traceback of exc as text, on both runtimes."""
    import io
    import sys

    buf = io.StringIO()
    if IS_MICROPYTHON:
        sys.print_exception(exc, buf)
    else:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=buf)
    return buf.getvalue()


def __getattr__(name):
    # `from board.compat import asyncio`: the event loop module of this
    # runtime (uasyncio on very old MicroPython ports), imported on first use
    # only, so that modules that never run a loop (the loader, the updater)
    # do not pay its ~4 KiB of heap.
    if name == "asyncio":
        try:
            import asyncio
        except ImportError:
            import uasyncio as asyncio
        globals()["asyncio"] = asyncio
        return asyncio
    raise AttributeError(name)
