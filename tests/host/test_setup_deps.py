"""Set-up reports missing Debian packages clearly; host tools name the package."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from host_tools.deps import MissingDependency, require_program

REPO = Path(__file__).resolve().parents[2]


def _check(packages: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MEDSENTRY_DEBIAN_PACKAGES=packages)
    return subprocess.run(["bash", "scripts/setup.sh", "--check"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_setup_check_names_a_missing_debian_package():
    proc = _check("mosquitto medsentry-no-such-package")
    assert proc.returncode == 2
    assert "missing Debian packages: medsentry-no-such-package" in proc.stderr
    assert "apt-get install -y medsentry-no-such-package" in proc.stderr


def test_setup_check_passes_when_packages_are_installed():
    proc = _check("mosquitto faketime")
    assert proc.returncode == 0, proc.stderr
    assert "present" in proc.stdout


def test_require_program_finds_mosquitto():
    assert require_program("mosquitto").endswith("/mosquitto")


def test_require_program_names_the_package():
    with pytest.raises(MissingDependency, match="install the Debian package `medsentry-nope-pkg`"):
        require_program("medsentry-nope", package="medsentry-nope-pkg")
