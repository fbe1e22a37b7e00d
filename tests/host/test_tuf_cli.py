"""`medsentry-tuf-client` exit statuses: 0 or 1, never another code (click's
usage errors would be 2), on both runtimes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CLIENT = str(Path(sys.executable).parent / "medsentry-tuf-client")
ROOT1 = Path(__file__).resolve().parents[1] / "device" / "data" / "tuf" / "root1.json"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLIENT, *args], capture_output=True, text=True, timeout=60)


def test_help_and_usage_errors():
    assert _run("--help").returncode == 0
    assert _run().returncode == 1
    assert _run("--metadata-dir", "x", "bogus").returncode == 1
    assert _run("--metadata-dir", "x", "--heap", "lots", "refresh").returncode == 1


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_init_and_bad_inputs(tmp_path, runtime):
    md = tmp_path / "md"
    p = _run("--runtime", runtime, "--metadata-dir", str(md), "init", str(ROOT1))
    assert p.returncode == 0, p.stdout + p.stderr
    assert (md / "root.json").read_bytes() == ROOT1.read_bytes()
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"signed": {"_type": "root"}, "signatures": []}')
    p = _run("--runtime", runtime, "--metadata-dir", str(tmp_path / "md2"), "init", str(bad))
    assert p.returncode == 1 and "error: repository: FormatError" in p.stdout
    assert not (tmp_path / "md2" / "root.json").exists()
    p = _run("--runtime", runtime, "--metadata-dir", str(md), "init", str(tmp_path / "missing.json"))
    assert p.returncode == 1
    # refresh without a URL: device usage error, exit 1
    p = _run("--runtime", runtime, "--metadata-dir", str(md), "refresh")
    assert p.returncode == 1 and "error: usage" in p.stdout
    # unreachable repository: transport error, exit 1, trusted root untouched
    p = _run("--runtime", runtime, "--metadata-dir", str(md), "--metadata-url", "http://127.0.0.1:9/metadata",
             "--connect-timeout", "2", "refresh")
    assert p.returncode == 1 and "error: download" in p.stdout
    assert (md / "root.json").read_bytes() == ROOT1.read_bytes()
