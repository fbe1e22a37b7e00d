# medsentry security agent (device side, MicroPython/CPython common subset).
