"""Issue 11.3: a repository change killed at any file landing never breaks the
repository.

For every command that writes the repository (publish, recall, rotation of
root / targets / snapshot / timestamp / a model, timestamp refresh, add-model)
and for every file it lands, a real child process runs the command and is
SIGKILLed at that landing (the env-armed hook in fsutil.landing kills the
process after the temp file is written and before it is renamed; plus once
after the last landing). Then:

- the next command (``timestamp refresh``) succeeds and the interrupted change
  is either wholly absent or wholly there (the journal finished it);
- no journal, temp file or orphan key file is left, ``repo status`` and
  ``repo recover`` pass;
- python-tuf's ngclient, bootstrapped with version 1 of root, accepts the
  repository; so does the device TUF client on the MicroPython VM (one VM run
  per command checks all its cases).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from click.testing import CliRunner

HOST_DIR = Path(__file__).resolve().parents[1] / "host"
if str(HOST_DIR) not in sys.path:
    sys.path.insert(0, str(HOST_DIR))

from test_release_support import NgClient, make_workdir  # noqa: E402

from host_tools import mpvm  # noqa: E402
from host_tools.cli.main import cli  # noqa: E402
from host_tools.release import fsutil  # noqa: E402
from host_tools.release.keys import KeyStore  # noqa: E402
from host_tools.release.layout import Layout  # noqa: E402
from host_tools.release.publish import publish_package  # noqa: E402
from host_tools.release.recall import recall_release  # noqa: E402
from host_tools.release.refresh import refresh  # noqa: E402
from host_tools.release.roles.models import add_model  # noqa: E402
from host_tools.release.rotate import rotate_key  # noqa: E402
from host_tools.release.serve import RepositoryServer  # noqa: E402
from host_tools.release.session import open_session  # noqa: E402

VM_SCRIPT = Path(__file__).parent / "vm_scripts" / "tuf_refresh_many.py"
ROLES = ("root", "targets", "snapshot", "timestamp", "pump-v2")
COMMANDS = {
    "publish": lambda s, t: publish_package(s, t.pkg),
    "recall": lambda s, t: recall_release(s, "1.0.0", "crash test"),
    "rotate-root": lambda s, t: rotate_key(s, "root"),
    "rotate-targets": lambda s, t: rotate_key(s, "targets"),
    "rotate-snapshot": lambda s, t: rotate_key(s, "snapshot"),
    "rotate-timestamp": lambda s, t: rotate_key(s, "timestamp"),
    "rotate-model": lambda s, t: rotate_key(s, "pump-v2"),
    "timestamp-refresh": lambda s, t: refresh(s),
    "add-model": lambda s, t: add_model(s, "infuser-v1"),
}


class Template:
    """A repository with one model and release 1.0.0, plus package 1.1.0."""

    def __init__(self, tmp: Path) -> None:
        self.env = make_workdir(tmp, models=("pump-v2",))
        self.env.pw.new("model-infuser-v1")  # known to the parent for the next command
        with self.env.session() as s:
            publish_package(s, self.env.build("1.0.0", 1))
        self.pkg = self.env.build("1.1.0", 2, variant="b")
        self.root1 = tmp / "1.root.json"
        shutil.copy(self.env.root1(), self.root1)
        self.before = state(self.env.workdir)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Template:
    return Template(tmp_path_factory.mktemp("crash-template"))


def state(workdir: Path) -> tuple:
    """What a change is about: root version, which roles kept their keys, the
    models and their target paths (timestamp/snapshot versions left out)."""
    with open_session(workdir, lock=False) as s:
        repo = s.repo
        keys = tuple(tuple(sorted(repo.role_keys(r)[0])) for r in ROLES)
        targets = tuple((m, tuple(sorted(repo.md(m).signed.targets))) for m in repo.models())
        return repo.md("root").signed.version, keys, targets


def same_keys(a: tuple, b: tuple) -> tuple:
    return (a[0], tuple(x == y for x, y in zip(a[1], b[1])), a[2])


def run_child(workdir: Path, template: Template, command: str, spec: str) -> int:
    """Fork; the child runs `command` with the kill hook armed at `spec`.
    Returns the signal that ended it (0 if it finished)."""
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.environ[fsutil.KILL_AT_LANDING_ENV] = spec
            fsutil.reset_landing_count()
            with open_session(workdir, template.env.pw) as s:
                COMMANDS[command](s, template)
        except BaseException:
            traceback.print_exc()
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return os.WTERMSIG(status)
    assert os.WEXITSTATUS(status) == 0, f"{command} at {spec} failed in the child"
    return 0


def leftovers(workdir: Path) -> list[str]:
    out = [p.name for p in workdir.rglob(f".*{fsutil.TMP_MARK}*")]
    if Layout.of(workdir).journal.exists():
        out.append("repository.journal")
    return out


def check_case(workdir: Path, template: Template, expected: set, url: str, ng_dir: Path) -> None:
    with open_session(workdir, template.env.pw) as s:  # the next command finishes the change
        refresh(s)
    assert leftovers(workdir) == []
    assert same_keys(state(workdir), template.before) in expected
    # every active key file is trusted by a role, every trusted online key has its file
    with open_session(workdir, lock=False) as s:
        trusted = {k for r in (*ROLES, *s.repo.models()) for k in s.repo.role_keys(r)[0]}
        have = set(KeyStore(Layout.of(workdir), template.env.pw).index())
        online = {k for r in ("targets", "snapshot", "timestamp", *s.repo.models()) for k in s.repo.role_keys(r)[0]}
    assert have <= trusted and online <= have
    runner = CliRunner()
    r = runner.invoke(cli, ["--workdir", str(workdir), "repo", "status"])
    assert r.exit_code == 0 and "EXPIRED" not in r.output, r.output
    r = runner.invoke(cli, ["--workdir", str(workdir), "repo", "recover"])
    assert r.exit_code == 0 and "no interrupted change" in r.output and "moved" not in r.output, r.output
    ng = NgClient(ng_dir, template.root1).refresh(url)
    ng.get_targetinfo("pump-v2/pump-v2-1.0.0.mspk")  # walks the delegation too


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_kill_at_every_landing_then_everything_accepts(template, tmp_path, command):
    cases = tmp_path / "cases"
    clean = cases / "clean" / "wd"
    shutil.copytree(template.env.workdir, clean)
    with open_session(clean, template.env.pw) as s:  # in this process: every lazy import done before forking
        COMMANDS[command](s, template)
    expected = {same_keys(template.before, template.before), same_keys(state(clean), template.before)}
    assert len(expected) == (1 if command == "timestamp-refresh" else 2)  # before / after differ

    killed: list[tuple[str, Path]] = []
    n = 0
    while True:
        n += 1
        wd = cases / f"mid{n}" / "wd"
        shutil.copytree(template.env.workdir, wd)
        sig = run_child(wd, template, command, f"{n}:mid")
        if sig == 0:  # fewer than n landings: all covered
            shutil.rmtree(wd.parent)
            break
        assert sig == signal.SIGKILL
        killed.append((f"{n}:mid", wd))
    last = cases / "after-last" / "wd"
    shutil.copytree(template.env.workdir, last)
    assert run_child(last, template, command, f"{n - 1}:after") == signal.SIGKILL
    killed.append((f"{n - 1}:after", last))
    assert len(killed) >= 4  # journal, a file, timestamp or key, journal removal

    lines = []
    with RepositoryServer(cases) as srv:
        for spec, wd in killed:
            rel = wd.parent.name
            check_case(wd, template, expected, f"{srv.url}/{rel}/wd/repository", tmp_path / "ng" / rel)
            lines.append(f"{tmp_path / 'dev' / rel} {template.root1} {srv.url}/{rel}/wd/repository")
        (tmp_path / "cases.txt").write_text("\n".join(lines) + "\n")
        r = mpvm.run_script(VM_SCRIPT, str(tmp_path / "cases.txt"), paths=[mpvm.REPO_ROOT],
                            cwd=mpvm.REPO_ROOT, timeout=300)
    results = [line.split() for line in r.stdout.splitlines() if line.startswith("CASE ")]
    assert len(results) == len(killed), r.stdout + r.stderr
    bad = [line for line in results if line[2:] != ["0", "0"]]
    assert not bad, r.stdout
