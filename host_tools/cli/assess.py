"""`medsentry assess`: fleet security assessment (findings, risk per device) as HTML/JSON."""
from __future__ import annotations

import json
from pathlib import Path

import click

from host_tools.collector.dbconn import DatabaseURLError, fleet_db
from host_tools.fleet import FleetReader, ReaderError
from host_tools.fleet.advisories import SEVERITIES
from host_tools.fleet.assess import AssessError, assess, fails, worst
from host_tools.fleet.report import render_html

#: Exit status when a finding reaches --fail-on (1 is click's error status).
FAIL_STATUS = 3


@click.command("assess")
@click.option("--advisories", "advisories_dir", type=click.Path(file_okay=False), default=None,
              help="Folder of OSV advisories [default: ./advisories if it exists].")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the HTML report here.")
@click.option("--json", "as_json", is_flag=True, help="Print the assessment as JSON.")
@click.option("--fail-on", type=click.Choice(SEVERITIES), default=None,
              help=f"Exit with status {FAIL_STATUS} when a finding is this severe or worse.")
@click.pass_context
def cli(ctx: click.Context, advisories_dir: str | None, out: str | None, as_json: bool,
        fail_on: str | None) -> None:
    """Vulnerable, unpatched, recalled, silent devices, expiring certificates, security state."""
    workdir = Path(ctx.obj["workdir"])
    if advisories_dir is None and Path("advisories").is_dir():
        advisories_dir = "advisories"
    try:
        report = assess(workdir, advisories_dir)
        if out:
            reader = FleetReader(fleet_db(workdir))
            try:
                Path(out).write_text(render_html(report, reader))
            finally:
                reader.close()
    except (ReaderError, AssessError, DatabaseURLError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror}") from None
    if as_json:
        click.echo(json.dumps(report, indent=1, sort_keys=True))
    else:
        for d in report["devices"]:
            click.echo(f"{d['device_id']}: risk {d['risk']}"
                       + "".join(f"\n  [{f['severity']}] {f['text']}" for f in d["findings"]))
        click.echo(f"worst finding: {worst(report)}" + (f"; report: {out}" if out else ""))
    if fail_on and fails(report, fail_on):
        ctx.exit(FAIL_STATUS)
