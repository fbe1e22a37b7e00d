# medsentry security agent (device side, MicroPython/CPython common subset).
# release_modules: the agent's one way to give imported code's heap back
# (update checks, the security monitor's cold half, command handling, the
# console's shell).
import gc


def release_modules(prefixes):
    # Drop modules from sys.modules so their bytecode can be collected: on the
    # unix VM (and any port loading .mpy into RAM) code lives on the heap. The
    # next check imports them again. Frozen firmware would not need this.
    import sys

    for name in list(sys.modules):
        for p in prefixes:
            if name == p or name.startswith(p + "."):
                del sys.modules[name]
                # The parent package keeps a reference too.
                parent, _, child = name.rpartition(".")
                pkg = sys.modules.get(parent)
                if pkg is not None and child in getattr(pkg, "__dict__", {}):
                    try:
                        delattr(pkg, child)
                    except AttributeError:
                        pass
                break
    gc.collect()
