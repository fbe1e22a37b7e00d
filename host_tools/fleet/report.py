"""The assessment as one self-contained HTML file (no script, no CDN, opens offline).

Templates: Jinja2 (autoescaping on: device ids, reasons and advisory texts come
from devices and files, never trusted as HTML). Charts: pygal, as static inline
SVG (charts.py says why and how the script is kept out).
"""
from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from . import charts
from .assess import RANK
from .charts import EVENT_COLORS, SEV_COLORS
from .reader import FleetReader
from .status import iso


def vitals_rows(reader: FleetReader | None, device_id: str | None, limit: int = 200) -> list[dict[str, Any]]:
    """The last heart rates (t, hr) of one device."""
    if reader is None or device_id is None:
        return []
    return [r for r in reader.vitals(device_id) if r.get("hr") is not None][-limit:]


def event_rows(reader: FleetReader | None, device_id: str | None, limit: int = 300) -> list[dict[str, Any]]:
    """Update reports (row 1) and security events (row 0) of one device, at the
    time the collector received them, newest ``limit``, oldest first."""
    if reader is None or device_id is None:
        return []
    evs = [{"t": r["received_at"], "row": 1, "label": f"update: {r['step']} {r.get('version') or ''}".strip(),
            "series": f"update: {r['step']}", "color": EVENT_COLORS.get(r["step"], EVENT_COLORS["update"])}
           for r in reader.updates(device_id)]
    evs += [{"t": e["received_at"], "row": 0, "label": f"security: {e['kind'] or '?'} ({e['severity'] or '?'})",
             "series": f"security: {e['severity'] or '?'}",
             "color": SEV_COLORS.get(str(e["severity"]).lower(), SEV_COLORS["unknown"])}
            for e in reader.sec_events(device_id)]
    return sorted(evs, key=lambda e: e["t"])[-limit:]


def render_html(report: dict[str, Any], reader: FleetReader | None = None) -> str:
    env = Environment(loader=PackageLoader("host_tools.fleet", "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["iso"] = iso
    focus = report["devices"][0]["device_id"] if report["devices"] else None
    latency = {d["device_id"]: x["latency_days"] for d in report["devices"] for x in d["findings"]
               if x["kind"] == "behind"}
    vitals = vitals_rows(reader, focus)
    events = event_rows(reader, focus)
    return env.get_template("report.html.j2").render(
        r=report, sev_colors=SEV_COLORS, rank=RANK,
        by_version=charts.bars("chart-versions", report["fleet_by_version"]),
        by_severity=charts.bars("chart-severity", report["findings_by_severity"]),
        latency=charts.bars("chart-latency", latency, unit=" d", color="#6a5acd"),
        focus=focus, vitals=vitals, events=events,
        vitals_svg=charts.heart_rate("chart-vitals", vitals), events_svg=charts.timeline("chart-events", events),
    )
