"""Errors of factory provisioning."""
from __future__ import annotations


class ProvisionError(RuntimeError):
    """Provisioning cannot be done or failed: the message says why and what to do."""


class BoardLocked(ProvisionError):
    """The board's console refuses the raw REPL: it was provisioned already."""


class ModelMismatch(ProvisionError):
    """The certificate was issued for another device model than the board runs."""


class TransferError(ProvisionError):
    """A file did not arrive intact on the board's flash (sha256 read back differs)."""
