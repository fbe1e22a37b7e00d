"""`medsentry --version` names the installed package version (issue 14, first hour)."""
from __future__ import annotations

import importlib.metadata

from click.testing import CliRunner

from host_tools.cli.main import cli


def test_version():
    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0
    assert r.output == f"medsentry {importlib.metadata.version('medsentry')}\n"
