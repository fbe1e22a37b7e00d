import os

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "cpython: device test run on CPython")
    config.addinivalue_line("markers", "micropython: device test run on the MicroPython VM")


# Test-only settings, read by host_tools (see host_tools/keyfile.py): key files
# written by the tests use a low scrypt work factor (the default stays
# N=2^17), and the fleet CA key that `pki init` encrypts gets this passphrase.
os.environ.setdefault("MEDSENTRY_TEST_ONLY_FAST_KDF", "1")
os.environ.setdefault("MEDSENTRY_KEY_PASSPHRASE_FLEET_CA", "test-fleet-ca-passphrase")
