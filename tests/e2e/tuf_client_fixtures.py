"""Fixtures of the TUF client end-to-end tests: a served TufRepo and the real
`medsentry-tuf-client` on MicroPython or CPython (import explicitly).

``tuf_env(tmp_path, runtime, **repo_kw)`` (context manager) yields a ``TufEnv``:
a ``TufRepo`` (tests/host/tuf_repo.py) served over loopback HTTP (or HTTPS)
and a ``Client`` that runs the real console script ``medsentry-tuf-client``
on the chosen runtime ("micropython" or the hidden "cpython").
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

HOST_DIR = Path(__file__).resolve().parents[1] / "host"
if str(HOST_DIR) not in sys.path:
    sys.path.insert(0, str(HOST_DIR))

import tuf_repo  # noqa: E402
from tuf_repo import RepoServer, TufRepo, serve  # noqa: E402,F401

RUNTIMES = ("micropython", "cpython")
CLIENT = str(Path(sys.executable).parent / "medsentry-tuf-client")

# Transport limits for tests: short, so that slow/stalled servers fail fast.
FAST_LIMITS = ["--read-timeout", "2", "--grace-ms", "1000", "--min-speed", "1024", "--connect-timeout", "3"]


@dataclass
class Result:
    code: int
    out: str

    @property
    def error(self) -> str:
        lines = [l for l in self.out.splitlines() if l.startswith("error:")]
        return lines[-1] if lines else ""


class Client:
    """One device: a metadata dir and a target dir, driven through the CLI."""

    def __init__(self, base: Path, server: RepoServer, runtime: str, ca_file: str | None = None) -> None:
        self.base = base
        self.metadata_dir = base / "metadata"
        self.target_dir = base / "targets"
        self.server = server
        self.runtime = runtime
        self.ca_file = ca_file if ca_file is not None else server.ca_file
        self.prefix: list[str] = []

    def run(self, *args: str, timeout: float = 90) -> Result:
        cmd = [*self.prefix, CLIENT, "--runtime", self.runtime, "--metadata-dir", str(self.metadata_dir), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode in (0, 1), f"exit code must be 0/1, got {proc.returncode}: {proc.stdout}{proc.stderr}"
        return Result(proc.returncode, proc.stdout + proc.stderr)

    def _net(self) -> list[str]:
        a = ["--metadata-url", self.server.url + "/metadata", *FAST_LIMITS]
        if self.ca_file:
            a += ["--ca-file", self.ca_file]
        return a

    def init(self, root_path: Path) -> Result:
        return self.run("init", str(root_path))

    def refresh(self) -> Result:
        return self.run(*self._net(), "refresh")

    def download(self, *names: str) -> Result:
        a = self._net()
        for n in names:
            a += ["--target-name", n]
        a += ["--target-base-url", self.server.url + "/targets", "--target-dir", str(self.target_dir)]
        return self.run(*a, "download")

    def target_file(self, name: str) -> Path:
        from urllib.parse import quote

        return self.target_dir / quote(name, safe="")

    def trusted_versions(self) -> dict[str, int]:
        return trusted_versions(self.metadata_dir)


@dataclass
class TufEnv:
    repo: TufRepo
    server: RepoServer
    client: Client
    tmp: Path

    def new_client(self, name: str, runtime: str | None = None) -> Client:
        c = Client(self.tmp / name, self.server, runtime or self.client.runtime)
        assert c.init(self.repo.root_path(1)).code == 0
        return c


@contextlib.contextmanager
def tuf_env(tmp: Path, runtime: str, *, https: bool = False, init: bool = True, **repo_kw) -> Iterator[TufEnv]:
    repo = TufRepo(tmp / "repo", **repo_kw)
    with serve(tmp / "repo", https=https, workdir=tmp / "pki") as srv:
        client = Client(tmp / "device", srv, runtime)
        if init:
            r = client.init(repo.root_path(1))
            assert r.code == 0, r.out
        yield TufEnv(repo, srv, client, tmp)


def ok(r: Result) -> Result:
    assert r.code == 0, r.out
    return r


def fails(r: Result, *needles: str) -> Result:
    """Assert exit 1 and that the failure line names every needle."""
    assert r.code == 1, r.out
    for n in needles:
        assert n in r.error, f"expected {n!r} in {r.error!r}\n{r.out}"
    return r


# ---------------------------------------------------------------- differential
def ngclient_ok(md_dir: Path, tdir: Path, url: str, names: list[str], bootstrap: bytes | None,
                config=None) -> bool:
    """python-tuf's ngclient: refresh, then fetch `names`; True when all succeeded."""
    from tuf.api import exceptions as tuf_exc
    from tuf.ngclient import Updater

    try:
        u = Updater(str(md_dir), url + "/metadata/", str(tdir), url + "/targets/", config=config,
                    bootstrap=bootstrap)
        u.refresh()
        for n in names:
            info = u.get_targetinfo(n)
            if info is None:
                return False
            if u.find_cached_target(info) is None:
                u.download_target(info)
        return True
    except (tuf_exc.RepositoryError, tuf_exc.DownloadError):
        return False


def trusted_versions(md_dir: Path) -> dict[str, int]:
    """Versions of the top-level metadata stored in `md_dir` (either envelope;
    our client and ngclient keep them under the same names)."""
    out = {}
    for role in ("root", "timestamp", "snapshot", "targets"):
        f = md_dir / f"{role}.json"
        if f.exists():
            out[role] = tuf_repo.read_signed(f)["version"]
    return out


def run_differential(env: TufEnv, tmp: Path, steps, config=None, check=None) -> list:
    """Walk `steps` [(name, step, expected)]: each step mutates the repository
    or the server and returns the target names to fetch (None: env.names);
    then ngclient (with `config`) and our client both refresh and download,
    and must reach the same decision, the expected one, the same trusted
    versions and the same target bytes. `check(name, env, ours_versions,
    result)` adds step-specific assertions. Returns the log."""
    ng_md = tmp / "ng" / "metadata"
    ng_md.mkdir(parents=True)
    ng_t = tmp / "ng" / "targets"
    ng_t.mkdir()
    bootstrap: bytes | None = env.repo.root_path(1).read_bytes()
    log = []
    for name, step, expected in steps:
        env.server.reset()
        names = step(env) or env.names
        ng_ok = ngclient_ok(ng_md, ng_t, env.server.url, names, bootstrap, config)
        bootstrap = None
        r = env.client.download(*names)
        ours_ok = r.code == 0
        ours_v, ng_v = env.client.trusted_versions(), trusted_versions(ng_md)
        log.append((name, ng_ok, ours_ok, ng_v, ours_v))
        assert ng_ok == ours_ok, f"step {name}: python-tuf {ng_ok}, ours {ours_ok}\n{r.out}\n{log}"
        assert ng_ok == expected, f"step {name}: expected {expected}\n{log}\n{r.out}"
        assert ours_v == ng_v, f"step {name}: versions differ\n{log}\n{r.out}"
        if check is not None:
            check(name, env, ours_v, r)
        for n in names if ours_ok else []:
            assert env.client.target_file(n).read_bytes() == (ng_t / n.replace("/", "%2F")).read_bytes()
    return log
