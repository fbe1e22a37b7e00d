"""`medsentry demo` failing in a stage says so in one line (which wait, where the
boards' logs are) and exits 1: no traceback on the screen (issue 14 §4)."""
from __future__ import annotations

from click.testing import CliRunner

from host_tools.cli import demo as demo_cli
from host_tools.cli.main import cli


def test_a_failed_stage_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    def failing(out):
        raise RuntimeError("demo: timed out waiting for pump-1 to run 1.2.0 and block its egress")

    monkeypatch.setattr(demo_cli, "run_demo", failing)
    r = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "out")])
    assert r.exit_code == 1
    assert "demo failed: demo: timed out waiting for pump-1" in r.output
    assert "console.log" in r.output and "Traceback" not in r.output
