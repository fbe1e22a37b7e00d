"""The assessment's charts, drawn by pygal as static inline SVG.

pygal (Kozea, pure Python, SVG out) was chosen over a JavaScript chart library
because the report must open offline on a security officer's machine with
nothing to run: the charts are finished SVG in the HTML. pygal adds one
<script> of its own to every chart (its tooltip config); it is removed here, and
each data point gets an SVG <title> instead, so a browser still shows the value
and label on hover without script. Labels (device ids, event kinds) come from
devices: they pass through ElementTree's serializer, which escapes them.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from xml.etree import ElementTree as ET

import pygal
from markupsafe import Markup
from pygal.style import Style

SEV_COLORS = {"critical": "#8b0000", "high": "#d2461e", "medium": "#e0a400", "low": "#4a7fb5",
              "unknown": "#888888"}
EVENT_COLORS = {"update": "#4a7fb5", "rolling_back": "#8b0000", "rejected": "#d2461e"}
STYLE = Style(background="white", plot_background="white", font_family="sans-serif",
              colors=("#4a7fb5", "#8b0000", "#d2461e", "#e0a400", "#6a5acd", "#888888"))


def _config(**kw: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = dict(js=[], disable_xml_declaration=True, explicit_size=True, style=STYLE,
                               show_legend=False, print_values=False)
    cfg.update(kw)
    return cfg


def to_svg(chart: pygal.graph.graph.Graph, element_id: str) -> Markup:
    """The chart as inline SVG with no script, each point titled for hover."""
    root = chart.render_tree()
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag == "script":
                parent.remove(child)
    for g in root.iter("g"):
        descs = [d.text for d in g.findall("desc") if d.text]
        if descs and any("tooltip-trigger" in (c.get("class") or "") for c in g):
            title = ET.Element("title")
            title.text = " ".join(reversed(descs))   # "label value"
            g.insert(0, title)
    root.set("role", "img")
    return Markup(ET.tostring(root, encoding="unicode"))


def bars(element_id: str, data: dict[str, float], unit: str = "", color: str = "#4a7fb5") -> Markup | None:
    """A horizontal bar per key (a severity's own colour where the key is one)."""
    if not data:
        return None
    chart = pygal.HorizontalBar(**_config(width=520, height=60 + 30 * len(data), print_values=True,
                                          value_formatter=lambda v: f"{v:g}{unit}"))
    labels = list(data)
    chart.x_labels = labels
    chart.add("", [{"value": float(data[k]), "color": SEV_COLORS.get(k, color), "label": k} for k in labels])
    return to_svg(chart, element_id)


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, timezone.utc).replace(tzinfo=None)


def heart_rate(element_id: str, rows: list[dict[str, Any]]) -> Markup | None:
    """Heart rate (bpm) over time (UTC) for one device; rows have t and hr."""
    if len(rows) < 2:
        return None
    chart = pygal.DateTimeLine(**_config(width=640, height=260, show_dots=False, x_label_rotation=20,
                                         x_value_formatter=lambda d: d.strftime("%H:%M:%S"),
                                         y_title="bpm", stroke_style={"width": 1.5}))
    chart.add("heart rate", [(_dt(r["t"]), r["hr"]) for r in rows])
    return to_svg(chart, element_id)


def timeline(element_id: str, events: list[dict[str, Any]]) -> Markup | None:
    """Events (t, row: 1 = update report, 0 = security event, label, series,
    color) as dots on a time axis, one series per kind with its own colour."""
    if not events:
        return None
    series: dict[str, list[dict[str, Any]]] = {}
    colors: dict[str, str] = {}
    for e in events:
        series.setdefault(e["series"], []).append({"value": (_dt(e["t"]), e["row"]), "label": e["label"]})
        colors.setdefault(e["series"], e["color"])
    chart = pygal.DateTimeLine(**_config(width=640, height=200, stroke=False, dots_size=5, show_legend=True,
                                         legend_at_bottom=True, range=(-0.5, 1.5), show_y_labels=False,
                                         x_label_rotation=20, x_value_formatter=lambda d: d.strftime("%H:%M:%S"),
                                         style=Style(background="white", plot_background="white",
                                                     font_family="sans-serif",
                                                     colors=tuple(colors.values()))))
    for name, points in series.items():
        chart.add(name, points)
    return to_svg(chart, element_id)
