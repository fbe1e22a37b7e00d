"""Operator views over the fleet database: ``fleet status`` and ``assess``.

Read-only: nothing here writes to ``fleet.db`` or the PKI.
"""
from .reader import FleetReader, ReaderError
from .status import fleet_status

__all__ = ["FleetReader", "ReaderError", "fleet_status"]
