"""Demo stage (last): the operator's view of the end state.

Flushes the collector, then prints ``fleet status`` and runs the security
assessment (the shipped OSV advisories) into ``demo-out/report.html``; the
summary gets ``operator``: devices per link state, releases, the worst finding
and the report's path.
"""
from __future__ import annotations

from pathlib import Path

from host_tools.demo.context import DemoContext
from host_tools.fleet import FleetReader, fleet_status
from host_tools.fleet.assess import assess, worst
from host_tools.fleet.report import render_html
from host_tools.fleet.text import status_text

ADVISORIES = Path(__file__).resolve().parents[2] / "advisories"


def stage_operator(ctx: DemoContext) -> None:
    tel = ctx.shared.get("telemetry")
    if tel is not None:
        tel["collector"].flush()  # the reader sees committed rows only
    status = fleet_status(ctx.workdir, release_dir=ctx.workdir / "release")
    ctx.console.print(status_text(status), markup=False, highlight=False, soft_wrap=True)
    report = assess(ctx.workdir, ADVISORIES if ADVISORIES.is_dir() else None, release_dir=ctx.workdir / "release")
    out = ctx.out / "report.html"
    reader = FleetReader(ctx.workdir / "fleet.db")
    try:
        out.write_text(render_html(report, reader))
    finally:
        reader.close()
    links: dict[str, int] = {}
    for d in status["devices"]:
        links[d["link"]] = links.get(d["link"], 0) + 1
    ctx.summary["operator"] = {
        "devices": links,
        "releases": status["releases"],
        "worst_finding": worst(report),
        "risk": {d["device_id"]: d["risk"] for d in report["devices"]},
        "report": str(out),
    }
    ctx.console.print(f"assessment report: {out.resolve()} (worst finding: {worst(report)})")
