"""`make test` runs the Renode Robot suites (renode/tests/*.robot) on the
simulated board; this test fails when any suite test fails. Results
(output.xml, log.html, report.html) stay in renode/out/sim as artefacts."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from host_tools.sim import robot_suites


def _passed(out: Path, extra: list[str], least: int) -> None:
    proc = robot_suites.run(out, extra, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    stats = ET.parse(out / "output.xml").getroot().find("statistics/total/stat")
    assert stats is not None and int(stats.get("fail")) == 0 and int(stats.get("pass")) >= least, ET.tostring(stats)


def test_renode_suites_pass_on_the_simulated_board():
    _passed(robot_suites.DEFAULT_OUT, [], 6)
