"""Export one device's stored telemetry as CSV or JSON."""
from __future__ import annotations

import csv
import io
import json
from typing import Any

from .db import VITAL_COLUMNS, FleetDB


class ExportError(ValueError):
    """Nothing to export (unknown device) or an unsupported format."""


def export_rows(db: FleetDB, device_id: str) -> list[dict[str, Any]]:
    if db.device(device_id) is None:
        raise ExportError(f"no telemetry stored for device {device_id!r}")
    return db.vitals(device_id)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """One line per record, ordered by sequence number; alarms joined with ``;``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(VITAL_COLUMNS)
    for r in rows:
        w.writerow([";".join(r["pump_alarms"]) if k == "pump_alarms" and r[k] is not None
                    else ("" if r[k] is None else r[k]) for k in VITAL_COLUMNS])
    return buf.getvalue()


def to_json(db: FleetDB, device_id: str, rows: list[dict[str, Any]]) -> str:
    """``{"device_id", "records": [...], "missing": [[first, last], ...],
    "gaps": [...], "counters": {...}, "updates": [...]}`` (update agent reports
    the device sent: step, version, reason, detail, times)."""
    doc = {
        "device_id": device_id,
        "records": rows,
        "missing": [list(r) for r in db.missing(device_id)],
        "gaps": db.gap_log(device_id),
        "counters": db.counters(device_id),
        "updates": db.updates(device_id),
    }
    return json.dumps(doc, indent=1) + "\n"


def export(db: FleetDB, device_id: str, fmt: str) -> str:
    rows = export_rows(db, device_id)
    if fmt == "csv":
        return to_csv(rows)
    if fmt == "json":
        return to_json(db, device_id, rows)
    raise ExportError(f"unsupported format {fmt!r} (csv or json)")
