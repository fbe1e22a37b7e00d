"""The assessment as one self-contained HTML file (no script, no CDN, opens offline).

Templates: Jinja2 (autoescaping on: device ids, reasons and advisory texts come
from devices and files, never trusted as HTML). Charts are inline SVG bar charts
drawn by the template from plain numbers (a chart library would add a JavaScript
runtime to an offline file a security officer opens; bars, one line and one
timeline of dots are all these need).
"""
from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from .assess import RANK
from .reader import FleetReader
from .status import iso

SEV_COLORS = {"critical": "#8b0000", "high": "#d2461e", "medium": "#e0a400", "low": "#4a7fb5",
              "unknown": "#888888"}


def bars(data: dict[str, float], color: str = "#4a7fb5") -> list[dict[str, Any]]:
    """Rows for a horizontal SVG bar chart: label, value, width (0-300 px), color."""
    top = max([float(v) for v in data.values()] + [1.0])
    return [{"label": k, "value": v, "width": round(300 * float(v) / top, 1),
             "color": SEV_COLORS.get(k, color)} for k, v in data.items()]


def vitals_series(reader: FleetReader | None, device_id: str | None, limit: int = 200) -> list[dict[str, Any]]:
    """Heart rate (bpm) over time for one device, as SVG polyline points."""
    if reader is None or device_id is None:
        return []
    rows = [r for r in reader.vitals(device_id) if r.get("hr") is not None][-limit:]
    if len(rows) < 2:
        return []
    t0, t1 = rows[0]["t"], rows[-1]["t"]
    lo, hi = min(r["hr"] for r in rows), max(r["hr"] for r in rows)
    span_t, span_v = (t1 - t0) or 1, (hi - lo) or 1
    return [{"x": round(10 + 400 * (r["t"] - t0) / span_t, 1), "y": round(150 - 130 * (r["hr"] - lo) / span_v, 1),
             "hr": r["hr"], "time": iso(r["t"])} for r in rows]


EVENT_COLORS = {"update": "#4a7fb5", "rolling_back": "#8b0000", "rejected": "#d2461e"}


def events_series(reader: FleetReader | None, device_id: str | None, limit: int = 300) -> list[dict[str, Any]]:
    """Update reports and security events of one device on a time axis (when the
    collector received them), as SVG circle positions: x (10-590 px), row (y:
    update reports on top, security events below), color, label."""
    if reader is None or device_id is None:
        return []
    evs = [{"t": r["received_at"], "row": 20, "label": f"update: {r['step']} {r.get('version') or ''}".strip(),
            "color": EVENT_COLORS.get(r["step"], EVENT_COLORS["update"])} for r in reader.updates(device_id)]
    evs += [{"t": e["received_at"], "row": 50, "label": f"security: {e['kind'] or '?'} ({e['severity'] or '?'})",
             "color": SEV_COLORS.get(str(e["severity"]).lower(), SEV_COLORS["unknown"])}
            for e in reader.sec_events(device_id)]
    evs = sorted(evs, key=lambda e: e["t"])[-limit:]
    if not evs:
        return []
    t0, t1 = evs[0]["t"], evs[-1]["t"]
    span = (t1 - t0) or 1
    return [dict(e, x=round(10 + 580 * (e["t"] - t0) / span, 1), y=e["row"], time=iso(e["t"])) for e in evs]


def render_html(report: dict[str, Any], reader: FleetReader | None = None) -> str:
    env = Environment(loader=PackageLoader("host_tools.fleet", "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    focus = report["devices"][0]["device_id"] if report["devices"] else None
    latency = {d["device_id"]: x["latency_days"] for d in report["devices"] for x in d["findings"]
               if x["kind"] == "behind"}
    points = vitals_series(reader, focus)
    events = events_series(reader, focus)
    return env.get_template("report.html.j2").render(
        r=report, sev_colors=SEV_COLORS, rank=RANK,
        by_version=bars(report["fleet_by_version"]),
        by_severity=bars(report["findings_by_severity"]),
        latency=bars(latency, "#6a5acd"),
        focus=focus, points=points, events=events,
        polyline=" ".join(f"{p['x']},{p['y']}" for p in points),
    )
