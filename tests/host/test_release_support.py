"""Shared helpers for the release-tooling tests (tests/host/test_release_*.py and
tests/e2e/test_release_*.py). Import with tests/host on sys.path:

    from test_release_support import Passwords, make_workdir, ngclient, ...

Also holds a few tests of the helpers themselves (the static server).
"""
from __future__ import annotations

import contextlib
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, MetaFile, TargetFile
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import Updater

from host_tools.release.build import build_package
from host_tools.release.errors import MissingPassphrase
from host_tools.release.fsutil import tree_digest
from host_tools.release.initialize import init_workdir
from host_tools.release.roles.models import add_model
from host_tools.release.serve import RepositoryServer
from host_tools.release.session import open_session

REPO_ROOT = Path(__file__).resolve().parents[2]


class Passwords:
    """In-memory passphrase source: a distinct passphrase per key name; a
    rotated key keeps its name's passphrase (the library only needs *a*
    passphrase for the new key)."""

    def __init__(self) -> None:
        self.current: dict[str, str] = {}
        self.wrong: set[str] = set()

    def existing(self, keyname: str) -> str:
        if keyname not in self.current:
            raise MissingPassphrase(f"no passphrase for key {keyname!r}")
        if keyname in self.wrong:
            return "not-the-passphrase"
        return self.current[keyname]

    def new(self, keyname: str, rotation: bool = False) -> str:
        return self.current.setdefault(keyname, f"pw-{keyname}-secret")

    def env(self) -> dict[str, str]:
        """The same passphrases as MEDSENTRY_KEY_PASSPHRASE_* variables."""
        from host_tools.release.keys import env_name

        return {env_name(k): v for k, v in self.current.items()}


def write_sources(root: Path, variant: str = "a") -> Path:
    """A tiny device app: app/hello.py (compiled), app/conf.json, main.py (kept)."""
    (root / "app").mkdir(parents=True, exist_ok=True)
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "hello.py").write_text(
        f"VARIANT = {variant!r}\n\ndef hello(name):\n    return 'hello ' + name + ' ' + VARIANT\n"
    )
    (root / "app" / "conf.json").write_text('{"rate_limit": 5}\n')
    (root / "main.py").write_text("import app.hello\nprint(app.hello.hello('pump'))\n")
    return root


@dataclass
class Env:
    workdir: Path
    pw: Passwords
    src: Path
    now: datetime | None = None

    def session(self, now: datetime | None = None, **kw):
        return open_session(self.workdir, self.pw, now=now or self.now, **kw)

    def build(self, version: str, counter: int, model: str = "pump-v2", variant: str | None = None, **kw) -> Path:
        if variant is not None:
            write_sources(self.src, variant)
        return build_package(
            model=model,
            version=version,
            sources=[self.src],
            base_dir=self.src,
            security_counter=counter,
            out_dir=self.workdir / "packages",
            **kw,
        ).path

    @property
    def repository(self) -> Path:
        return self.workdir / "repository"

    def digest(self) -> str:
        return tree_digest(self.repository)

    def root1(self) -> Path:
        return self.repository / "metadata" / "1.root.json"


def make_workdir(tmp_path: Path, models=("pump-v2", "monitor-v1"), now: datetime | None = None, config=None) -> Env:
    pw = Passwords()
    wd = tmp_path / "wd"
    init_workdir(wd, pw, config=config, now=now)
    env = Env(wd, pw, write_sources(tmp_path / "src"), now)
    for m in models:
        with env.session() as s:
            add_model(s, m)
    return env


def past(**kw) -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) - timedelta(**kw)


class NgClient:
    """python-tuf's ngclient, bootstrapped once with a trusted root, against a
    served repository; keeps its metadata between refreshes like a device."""

    def __init__(self, tmp: Path, root: Path) -> None:
        self.dir = tmp
        (self.dir / "meta").mkdir(parents=True, exist_ok=True)
        (self.dir / "dl").mkdir(exist_ok=True)
        shutil.copy(root, self.dir / "meta" / "root.json")

    def updater(self, url: str) -> Updater:
        return Updater(
            str(self.dir / "meta"), f"{url}/metadata/", str(self.dir / "dl"), f"{url}/targets/", bootstrap=None
        )

    def refresh(self, url: str) -> Updater:
        u = self.updater(url)
        u.refresh()
        return u

    def fetch(self, url: str, target: str) -> bytes | None:
        """Refresh, look the target up, download and return it (None if unknown)."""
        u = self.refresh(url)
        info = u.get_targetinfo(target)
        if info is None:
            return None
        path = u.download_target(info)
        return Path(path).read_bytes()


@contextlib.contextmanager
def served(env: Env):
    with RepositoryServer(env.repository) as srv:
        yield srv.url


def sign_as(env, role_md: Metadata, keyid: str, role_for_error: str):
    with env.session() as s:
        signer = s.keystore.signer(keyid, role_for_error)
    role_md.signatures.clear()
    role_md.sign(signer)


def write_snapshot_and_timestamp(env, role: str, role_md: Metadata):
    """Attacker who also holds the online snapshot+timestamp keys: publishes a
    forged role version properly referenced by snapshot and timestamp."""
    meta = env.repository / "metadata"
    data = role_md.to_bytes(JSONSerializer(compact=True))
    (meta / f"{role_md.signed.version}.{role}.json").write_bytes(data)
    with env.session() as s:
        snap_signer = s.repo.signers_for("snapshot")[0]
        ts_signer = s.repo.signers_for("timestamp")[0]
        snap = s.repo.md("snapshot")
        ts = s.repo.md("timestamp")
    snap.signed.meta[f"{role}.json"] = MetaFile.from_data(role_md.signed.version, data, ["sha256"])
    snap.signed.version += 1
    snap.signatures.clear()
    snap.sign(snap_signer)
    sdata = snap.to_bytes(JSONSerializer(compact=True))
    (meta / f"{snap.signed.version}.snapshot.json").write_bytes(sdata)
    ts.signed.snapshot_meta = MetaFile.from_data(snap.signed.version, sdata, ["sha256"])
    ts.signed.version += 1
    ts.signatures.clear()
    ts.sign(ts_signer)
    (meta / "timestamp.json").write_bytes(ts.to_bytes(JSONSerializer(compact=True)))


def forge_target(env, role_md: Metadata, path: str, data: bytes):
    tf = TargetFile.from_data(path, data, ["sha256"])
    tf.unrecognized_fields["custom"] = {"type": "package", "model": path.split("/")[0], "version": "9.9.9",
                                        "security_counter": 99, "channel": "stable"}
    role_md.signed.targets[path] = tf
    role_md.signed.version += 1
    d, _, b = path.rpartition("/")
    dest = env.repository / "targets" / d / f"{tf.hashes['sha256']}.{b}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)


def forge_role_with_target(env: Env, role: str, target: str, data: bytes, signer_keyid: str) -> None:
    """Add `target` to `role`'s current metadata, sign it with the key
    `signer_keyid` only, and publish it with valid snapshot and timestamp (an
    attacker holding that key plus the online snapshot/timestamp keys)."""
    with env.session() as s:
        md = s.repo.md(role)
    forge_target(env, md, target, data)
    sign_as(env, md, signer_keyid, role)
    write_snapshot_and_timestamp(env, role, md)


# --------------------------------------------------------------- helper tests
def test_server_serves_files_ranges_and_hides_listings_and_dotfiles(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.bin").write_bytes(bytes(range(256)))
    (tmp_path / ".f.tmp1").write_bytes(b"partial")
    with RepositoryServer(tmp_path) as srv:
        assert urllib.request.urlopen(f"{srv.url}/d/f.bin").read() == bytes(range(256))
        req = urllib.request.Request(f"{srv.url}/d/f.bin", headers={"Range": "bytes=10-19"})
        resp = urllib.request.urlopen(req)
        assert resp.status == 206 and resp.read() == bytes(range(10, 20))
        assert resp.headers["Content-Range"] == "bytes 10-19/256"
        for path in ("/d/", "/.f.tmp1"):
            with pytest.raises(urllib.error.HTTPError) as ei:
                urllib.request.urlopen(srv.url + path)
            assert ei.value.code == 404

