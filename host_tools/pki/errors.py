"""Errors raised by the fleet PKI."""
from __future__ import annotations


class PkiError(Exception):
    """A PKI operation cannot be done (bad input, missing or inconsistent state)."""


class NotInitialized(PkiError):
    """`pki init` has not been run in this work dir."""


class UnknownDevice(PkiError):
    """No device record with that id."""
