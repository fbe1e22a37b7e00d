import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "cpython: device test run on CPython")
    config.addinivalue_line("markers", "micropython: device test run on the MicroPython VM")
