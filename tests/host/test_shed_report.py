"""The brokers' shed reports (collector/shed_report.py): what parses, what is refused."""
from __future__ import annotations

import json

import pytest

from host_tools.collector import shed_report


def test_mosquitto_and_cluster_reports_parse():
    assert shed_report.parse(b'{"client": "pump-1", "shed": 12, "rate": 500}') == ("pump-1", 12, "", 0)
    rep = json.dumps({"client": "pump-1", "shed": 3, "node": "ms-1@localhost", "boot": 1764489600123,
                      "rate": 500, "burst": 2000}).encode()
    assert shed_report.parse(rep) == ("pump-1", 3, "ms-1@localhost", 1764489600123)


@pytest.mark.parametrize("payload", [b"", b"not json", b"[1, 2]", b'{"client": "pump-1"}', b'{"shed": 3}',
                                     b'{"client": "pump-1", "shed": "many"}', b'{"client": "", "shed": 1}',
                                     b'{"client": "pump-1", "shed": -5}',
                                     b'{"client": "pump-1", "shed": 1, "boot": "x"}'])
def test_bad_reports_are_refused_with_the_payload_named(payload):
    with pytest.raises(ValueError, match="bad broker shed report"):
        shed_report.parse(payload)
