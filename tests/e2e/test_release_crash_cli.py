"""Issue 11.3 through the real `medsentry` command: the review's attack (SIGKILL
from outside during `keys rotate timestamp`), and Ctrl-C during a committed
change (never "Aborted!")."""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HOST_DIR = Path(__file__).resolve().parents[1] / "host"
if str(HOST_DIR) not in sys.path:
    sys.path.insert(0, str(HOST_DIR))

from test_release_support import make_workdir  # noqa: E402

from host_tools.release.fsutil import KILL_AT_LANDING_ENV  # noqa: E402
from host_tools.release.keys import env_name  # noqa: E402

MEDSENTRY = Path(sys.executable).parent / "medsentry"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("crash-cli"), models=("pump-v2",))


def cli_env(template, **extra) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(KILL_AT_LANDING_ENV, None)
    env.update(template.pw.env())
    env[env_name("timestamp", new=True)] = "pw-timestamp-new-secret"
    env.update(extra)
    return env


def medsentry(wd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(MEDSENTRY), "--workdir", str(wd), *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_sigkill_from_outside_during_rotation_then_everything_works(template, tmp_path):
    """Kill `keys rotate timestamp` from outside as soon as 2.root.json lands
    (the review's attack: 10 of 10 repositories broken before the journal), or
    at a random moment after its journal shows up: every command afterwards
    works, no orphan keys."""
    rng = random.Random(11)
    killed = 0
    for i in range(4):
        wd = tmp_path / f"wd{i}"
        shutil.copytree(template.workdir, wd)
        env = cli_env(template)
        proc = subprocess.Popen([str(MEDSENTRY), "--workdir", str(wd), "keys", "rotate", "timestamp", "--no-prompt"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        watch = wd / ("repository/metadata/2.root.json" if i % 2 == 0 else "repository.journal")
        deadline = time.monotonic() + 60
        while proc.poll() is None and not watch.exists() and time.monotonic() < deadline:
            time.sleep(0.0002)
        if i % 2:
            time.sleep(rng.uniform(0, 0.02))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(timeout=60)
        status = medsentry(wd, "repo", "status", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert not (wd / "repository.journal").exists()
        listing = medsentry(wd, "keys", "list", "--json", env=env)
        assert listing.returncode == 0 and "not trusted" not in listing.stdout, listing.stdout
        again = medsentry(wd, "keys", "rotate", "timestamp", "--no-prompt", env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "root is now version" in again.stdout
    assert killed >= 2


@pytest.mark.parametrize("landing", ["1:before", "4:mid", "6:after"])
def test_ctrl_c_during_a_committed_change_completes_it(template, tmp_path, landing):
    """SIGINT at a landing of the committed rotation: the rotation completes,
    the command says so, and click's "Aborted!" never appears."""
    wd = tmp_path / "wd"
    shutil.copytree(template.workdir, wd)
    env = cli_env(template, **{KILL_AT_LANDING_ENV: landing + ":INT"})
    r = medsentry(wd, "keys", "rotate", "timestamp", "--no-prompt", env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Aborted" not in out
    assert "Ctrl-C arrived while the change was being written; it was completed first" in out
    assert "root is now version 2" in out
    assert not (wd / "repository.journal").exists()
    status = medsentry(wd, "repo", "status", env=cli_env(template))
    assert status.returncode == 0 and "root         v2" in status.stdout, status.stdout



@pytest.mark.parametrize("role,landing", [("timestamp", "6:mid"), ("targets", "8:mid")])
def test_recover_repairs_a_rotation_an_older_version_left_half_done(template, tmp_path, role, landing):
    """The state the review left (before the journal existed): new key file and
    2.root.json landed, the rotated role still signed with the old key, no
    journal. Every command refuses it; `repo recover` re-signs and repairs it."""
    from test_release_support import NgClient

    from host_tools.release.serve import RepositoryServer

    wd = tmp_path / "wd"
    shutil.copytree(template.workdir, wd)
    env = cli_env(template, **{env_name(role, new=True): f"pw-{role}-new-secret"})
    r = medsentry(wd, "keys", "rotate", role, "--no-prompt", env={**env, KILL_AT_LANDING_ENV: landing})
    assert r.returncode == -signal.SIGKILL
    (wd / "repository.journal").unlink()  # what an older medsentry left: no journal
    meta = wd / "repository" / "metadata"
    assert (meta / "2.root.json").exists()
    env[env_name(role)] = f"pw-{role}-new-secret"
    status = medsentry(wd, "repo", "status", env=env)
    assert status.returncode == 1 and f"{role} was signed by 0/1 keys" in status.stderr, status.stderr
    fixed = medsentry(wd, "repo", "recover", "--no-prompt", env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f"repaired a half-done rotation: re-signed {role}" in fixed.stdout
    assert "to keys/retired/" in fixed.stdout  # the replaced key, which no role trusts now
    assert medsentry(wd, "repo", "status", env=env).returncode == 0
    listing = medsentry(wd, "keys", "list", "--json", env=env)
    assert "not trusted" not in listing.stdout
    with RepositoryServer(wd / "repository") as srv:
        NgClient(tmp_path / "ng", template.root1()).refresh(srv.url)
