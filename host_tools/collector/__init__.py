"""The telemetry collector: verify + decrypt sealed records (SEALING.md), store in SQLite."""
from .db import FleetDB
from .ingest import Ingestor
from .outcomes import OUTCOMES, REJECTIONS, Outcome
from .service import SUBSCRIPTIONS, Collector, CollectorConfig, open_collector, prime_session, tls_client

__all__ = [
    "OUTCOMES",
    "REJECTIONS",
    "SUBSCRIPTIONS",
    "Collector",
    "CollectorConfig",
    "FleetDB",
    "Ingestor",
    "Outcome",
    "open_collector",
    "prime_session",
    "tls_client",
]
