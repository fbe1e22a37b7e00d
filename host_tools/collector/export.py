"""Export stored telemetry as CSV or JSON, readable without the sealing docs.

CSV (one or several devices): ISO 8601 UTC times, units in the column names, the
device id on every line, ordered by device then sequence number; a hole in a
device's sequence (records never received) is a line of its own with
``gap = missing <first>-<last>`` so a chart or a reader sees it. ``--raw`` keeps
the database columns (board epoch seconds, no units).

JSON (one device): the stored records (each with ``time_utc``), ``units``, missing
ranges, gap log, counters and update reports; several devices: ``{"devices": [...]}``.
"""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from typing import Any

from .db import VITAL_COLUMNS, FleetDB


class ExportError(ValueError):
    """Nothing to export (unknown device) or an unsupported format."""


#: database column -> readable column name (unit in brackets-free suffix).
READABLE = (
    ("seq", "seq"), ("t", "time_utc"), ("hr", "hr_bpm"), ("spo2", "spo2_pct"),
    ("bp_sys", "bp_sys_mmHg"), ("bp_dia", "bp_dia_mmHg"), ("temp", "temp_degC"),
    ("pump_state", "pump_state"), ("pump_rate", "pump_rate_ml_per_h"), ("pump_vtbi", "pump_vtbi_ml"),
    ("pump_infused", "pump_infused_ml"), ("pump_alarms", "pump_alarms"), ("received_at", "received_utc"),
)
UNITS = {"hr": "bpm", "spo2": "%", "bp_sys": "mmHg", "bp_dia": "mmHg", "temp": "degC",
         "pump_rate": "ml/h", "pump_vtbi": "ml", "pump_infused": "ml", "t": "s since 1970 (board clock)",
         "received_at": "s since 1970 (collector clock)"}


def iso_utc(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def export_rows(db: FleetDB, device_id: str, since: float | None = None, until: float | None = None
                ) -> list[dict[str, Any]]:
    if db.device(device_id) is None:
        raise ExportError(f"no telemetry stored for device {device_id!r}")
    return [r for r in db.vitals(device_id)
            if (since is None or r["t"] >= since) and (until is None or r["t"] <= until)]


def to_csv(rows: list[dict[str, Any]]) -> str:
    """Raw: one line per record, database columns; alarms joined with ``;``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(VITAL_COLUMNS)
    for r in rows:
        w.writerow([";".join(r["pump_alarms"]) if k == "pump_alarms" and r[k] is not None
                    else ("" if r[k] is None else r[k]) for k in VITAL_COLUMNS])
    return buf.getvalue()


def _readable_cell(k: str, v: Any) -> Any:
    if k in ("t", "received_at"):
        return iso_utc(v)
    if k == "pump_alarms" and v is not None:
        return ";".join(v)
    return "" if v is None else v


def to_readable_csv(db: FleetDB, per_device: dict[str, list[dict[str, Any]]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["device_id"] + [name for _, name in READABLE] + ["gap"])
    for dev, rows in per_device.items():
        holes = db.missing(dev)
        seqs = [r["seq"] for r in rows]
        lo, hi = (min(seqs), max(seqs)) if seqs else (None, None)
        marks = [(a, f"missing {a}-{b}") for a, b in holes if lo is not None and lo <= a <= hi]
        lines = [(r["seq"], 1, [dev] + [_readable_cell(k, r[k]) for k, _ in READABLE] + [""]) for r in rows]
        lines += [(a, 0, [dev, a] + [""] * (len(READABLE) - 1) + [text]) for a, text in marks]
        for _, _, line in sorted(lines, key=lambda x: (x[0], x[1])):
            w.writerow(line)
    return buf.getvalue()


def to_json(db: FleetDB, device_id: str, rows: list[dict[str, Any]]) -> str:
    return json.dumps(_json_doc(db, device_id, rows), indent=1) + "\n"


def _json_doc(db: FleetDB, device_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"device_id", "units", "records": [...], "missing": [[first, last], ...],
    "gaps": [...], "counters": {...}, "updates": [...]}`` (update agent reports
    the device sent: step, version, reason, detail, times)."""
    return {
        "device_id": device_id,
        "units": UNITS,
        "records": [dict(r, time_utc=iso_utc(r["t"]), received_utc=iso_utc(r["received_at"])) for r in rows],
        "missing": [list(r) for r in db.missing(device_id)],
        "gaps": db.gap_log(device_id),
        "counters": db.counters(device_id),
        "updates": db.updates(device_id),
    }


def export(db: FleetDB, device_id: str | list[str], fmt: str, *, since: float | None = None,
           until: float | None = None, raw: bool = False) -> str:
    devices = [device_id] if isinstance(device_id, str) else list(device_id)
    per_device = {d: export_rows(db, d, since, until) for d in devices}
    if fmt == "csv":
        if raw:
            if len(devices) != 1:
                raise ExportError("--raw exports one device at a time")
            return to_csv(per_device[devices[0]])
        return to_readable_csv(db, per_device)
    if fmt == "json":
        if len(devices) == 1:
            return to_json(db, devices[0], per_device[devices[0]])
        return json.dumps({"devices": [_json_doc(db, d, r) for d, r in per_device.items()]}, indent=1) + "\n"
    raise ExportError(f"unsupported format {fmt!r} (csv or json)")
