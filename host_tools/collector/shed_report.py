"""The brokers' reports of what their per-client publish limit dropped, on
``medsentry/broker/shed`` (only the broker itself can publish there: no client's ACL
or topic permission allows it, and ``broker`` is a reserved device id).

JSON ``{"client", "shed"}``: the client (certificate CN) and the running total the
broker dropped of it. The cluster's nodes add ``"node"`` and ``"boot"`` (ms since
the epoch when the node's limiter started): totals are per node and start again
at each boot (host_tools/broker/ratelimit/)."""
from __future__ import annotations

import json
from typing import NamedTuple

from host_tools.broker.plugin import NOTIFY_TOPIC

TOPIC = NOTIFY_TOPIC


class ShedReport(NamedTuple):
    client: str
    total: int
    node: str
    boot: int


def parse(payload: bytes) -> ShedReport:
    """Raise ValueError on anything but a well-formed report."""
    try:
        d = json.loads(payload)
        report = ShedReport(str(d["client"]), int(d["shed"]), str(d.get("node", "")), int(d.get("boot", 0)))
        if report.total < 0 or not report.client:
            raise ValueError("negative total or no client")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"bad broker shed report {payload[:80]!r}") from exc
    return report
