"""Bad input: each case is a typed library error (a clean CLI error) and the
repository tree is byte-for-byte unchanged (hashed before and after)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from test_release_support import NgClient, make_workdir, past, served  # noqa: E402

from host_tools.cli.main import cli  # noqa: E402
from host_tools.release import errors  # noqa: E402
from host_tools.release.package import HEADER_SIZE  # noqa: E402
from host_tools.release.publish import publish_package  # noqa: E402
from host_tools.release.recall import recall_release  # noqa: E402
from host_tools.release.refresh import refresh  # noqa: E402
from host_tools.release.roles.models import add_model  # noqa: E402
from host_tools.release.rotate import rotate_key  # noqa: E402


@pytest.fixture
def env(tmp_path):
    env = make_workdir(tmp_path, models=("pump-v2", "monitor-v1"))
    pkg = env.build("1.1.0", 5)
    with env.session() as s:
        publish_package(s, pkg)
    return env


def unchanged(env, fn, exc_type, match=None):
    before = env.digest()
    with pytest.raises(exc_type, match=match):
        fn()
    assert env.digest() == before, "the repository changed after a failed operation"


def publish_fn(env, pkg):
    def run():
        with env.session() as s:
            publish_package(s, pkg)
    return run


def test_wrong_passphrase(env):
    pkg = env.build("1.2.0", 6)
    env.pw.wrong.add("model-pump-v2")
    unchanged(env, publish_fn(env, pkg), errors.WrongPassphrase, "wrong passphrase for key 'model-pump-v2'")
    env.pw.wrong = {"timestamp"}
    unchanged(env, publish_fn(env, pkg), errors.WrongPassphrase, "timestamp")
    env.pw.wrong = {"root-1"}
    def rot():
        with env.session() as s:
            rotate_key(s, "root")
    unchanged(env, rot, errors.WrongPassphrase, "root-1")
    env.pw.wrong = set()
    publish_fn(env, pkg)()  # and with the right one it works


def test_missing_key_file_and_missing_passphrase(env):
    pkg = env.build("1.2.0", 6)
    del env.pw.current["snapshot"]
    unchanged(env, publish_fn(env, pkg), errors.MissingKey, "snapshot")
    env.pw.current["snapshot"] = "pw-snapshot-secret"
    for f in (env.workdir / "keys").glob("model-pump-v2-*"):
        f.unlink()
    unchanged(env, publish_fn(env, pkg), errors.MissingKey, "pump-v2")


def test_root_threshold_needs_two_keys(env):
    for name in ("root-1", "root-2"):
        for f in (env.workdir / "keys").glob(f"{name}-*"):
            f.unlink()
    def rot():
        with env.session() as s:
            rotate_key(s, "timestamp")
    unchanged(env, rot, errors.MissingKey, "needs 2 key")


def test_unknown_model(env):
    pkg = env.build("1.0.0", 1, model="ventilator-v1")
    unchanged(env, publish_fn(env, pkg), errors.UnknownModel, "keys add-model ventilator-v1")
    def recall():
        with env.session() as s:
            recall_release(s, "1.1.0", "x", model="ventilator-v1")
    unchanged(env, recall, errors.UnknownModel)
    def bad_name():
        with env.session() as s:
            add_model(s, "Targets")
    unchanged(env, bad_name, errors.ConfigError, "not a valid model name")


@pytest.mark.parametrize("version,counter,exc", [
    ("1.1.0", 6, errors.VersionNotIncreasing),   # same version
    ("1.0.9", 6, errors.VersionNotIncreasing),   # lower version
    ("1.2.0", 5, errors.CounterNotIncreasing),   # same counter
    ("1.2.0", 4, errors.CounterNotIncreasing),   # lower counter
])
def test_version_and_counter_must_rise(env, version, counter, exc):
    pkg = env.build(version, counter, variant="z")
    unchanged(env, publish_fn(env, pkg), exc, "not above")


def test_recalled_version_and_counter_are_not_reused(env):
    with env.session() as s:
        recall_release(s, "1.1.0", "bad dosing table")
    pkg = env.build("1.1.0", 6, variant="again")
    unchanged(env, publish_fn(env, pkg), errors.VersionNotIncreasing, "recalled")
    def again():
        with env.session() as s:
            recall_release(s, "1.1.0", "twice")
    unchanged(env, again, errors.UnknownRelease, "already recalled")
    def unknown():
        with env.session() as s:
            recall_release(s, "7.0.0", "never published")
    unchanged(env, unknown, errors.UnknownRelease, "not published")


@pytest.mark.parametrize("where", ["file-data", "manifest", "truncated", "trailing", "sbom"])
def test_package_not_matching_its_manifest(env, where):
    pkg = env.build("1.2.0", 6, variant="c")
    data = bytearray(pkg.read_bytes())
    mlen = int.from_bytes(data[8:12], "big")
    if where == "file-data":
        data[HEADER_SIZE + mlen + 3] ^= 0x40
    elif where == "manifest":
        i = data.index(b'"version":"1.2.0"')
        data[i + 11:i + 16] = b"1.3.0"
    elif where == "truncated":
        del data[-10:]
    elif where == "trailing":
        data += b"\0"
    elif where == "sbom":
        data[-4] ^= 0x01
    pkg.write_bytes(bytes(data))
    unchanged(env, publish_fn(env, pkg), errors.PackageError)


def test_swapped_file_content_with_recomputed_compression_is_caught(env):
    """A package whose carried file inflates fine but is not the file the
    manifest hashes (e.g. one file swapped for another)."""
    import hashlib
    import json

    from host_tools.release.package import HEADER, MAGIC, canonical_json, compress

    pkg = env.build("1.2.0", 6, variant="d")
    data = pkg.read_bytes()
    mlen = int.from_bytes(data[8:12], "big")
    manifest = json.loads(data[HEADER_SIZE:HEADER_SIZE + mlen])
    body = bytearray()
    for e in manifest["files"]:
        blob = compress(b"malicious" if e["path"].endswith("hello.mpy") else b"x" * e["size"])
        e["offset"], e["csize"] = len(body), len(blob)
        body += blob
    sbom_blob = data[HEADER_SIZE + mlen + manifest["sbom"]["offset"]:]
    manifest["sbom"]["offset"] = len(body)
    body += sbom_blob
    m = canonical_json(manifest)
    forged = HEADER.pack(MAGIC, 1, 0, 0, len(m), hashlib.sha256(m).digest()) + m + bytes(body)
    pkg.write_bytes(forged)
    unchanged(env, publish_fn(env, pkg), errors.PackageIntegrityError)


def test_expired_root_blocks_publishing_until_rotated(tmp_path):
    env = make_workdir(tmp_path, models=("pump-v2",), now=past(days=400))
    pkg = env.build("1.0.0", 1)
    env.now = None
    unchanged(env, publish_fn(env, pkg), errors.RootExpired, "keys rotate root")
    def ts():
        with env.session() as s:
            refresh(s)
    unchanged(env, ts, errors.RootExpired)
    with env.session() as s:
        rotate_key(s, "root")
    publish_fn(env, pkg)()
    with served(env) as url:
        assert NgClient(tmp_path / "c", env.root1()).fetch(url, "pump-v2/pump-v2-1.0.0.mspk") == pkg.read_bytes()


def test_init_twice_and_weak_or_shared_root_passphrases(tmp_path, monkeypatch):
    env = make_workdir(tmp_path, models=())
    from host_tools.release.initialize import init_workdir

    before = env.digest()
    with pytest.raises(errors.AlreadyInitialized):
        init_workdir(env.workdir, env.pw)
    assert env.digest() == before

    class Same:
        def new(self, name, rotation=False):
            return "the-same-passphrase"

    with pytest.raises(errors.WeakPassphrase, match="same passphrase"):
        init_workdir(tmp_path / "other", Same())

    class Short:
        def new(self, name, rotation=False):
            return "short"

    with pytest.raises(errors.WeakPassphrase, match="too short"):
        init_workdir(tmp_path / "other2", Short())
    assert not (tmp_path / "other" / "keys").exists() or not any((tmp_path / "other" / "keys").iterdir())


def test_failure_while_writing_rolls_back(env, monkeypatch):
    """A crash in the middle of the commit (here: the snapshot write fails)
    removes what that commit wrote (and its journal); timestamp.json was never touched."""
    import host_tools.release.journal as repo_mod

    pkg = env.build("1.2.0", 6, variant="e")
    real = repo_mod.write_atomic

    def flaky(path, data, mode=0o644):
        if path.name.endswith(".snapshot.json"):
            raise OSError(28, "No space left on device")
        return real(path, data, mode)

    monkeypatch.setattr(repo_mod, "write_atomic", flaky)
    unchanged(env, publish_fn(env, pkg), OSError)
    assert not (env.workdir / "repository.journal").exists()
    monkeypatch.setattr(repo_mod, "write_atomic", real)
    publish_fn(env, pkg)()


def test_cli_reports_clean_errors(env, tmp_path):
    runner = CliRunner()
    pkg = env.build("1.0.0", 1)  # version not above 1.1.0
    envvars = env.pw.env()
    before = env.digest()
    r = runner.invoke(cli, ["--workdir", str(env.workdir), "release", "publish", str(pkg), "--no-prompt"], env=envvars)
    assert r.exit_code == 1 and "Error: pump-v2 1.0.0 is not above the last published version 1.1.0" in r.output
    envvars["MEDSENTRY_KEY_PASSPHRASE_MODEL_PUMP_V2"] = "wrong-wrong"
    pkg2 = env.build("1.3.0", 9, variant="f")
    r = runner.invoke(cli, ["--workdir", str(env.workdir), "release", "publish", str(pkg2), "--no-prompt"], env=envvars)
    assert r.exit_code == 1 and "wrong passphrase for key 'model-pump-v2'" in r.output
    del envvars["MEDSENTRY_KEY_PASSPHRASE_MODEL_PUMP_V2"]
    r = runner.invoke(cli, ["--workdir", str(env.workdir), "release", "publish", str(pkg2), "--no-prompt"], env=envvars)
    assert r.exit_code == 1 and "MEDSENTRY_KEY_PASSPHRASE_MODEL_PUMP_V2" in r.output
    r = runner.invoke(cli, ["--workdir", str(tmp_path / "nothing"), "release", "list"])
    assert r.exit_code == 1 and "keys init" in r.output
    assert env.digest() == before
    assert "Traceback" not in r.output


def test_patch_over_an_unpublished_base(env, tmp_path):
    """A patch whose base version was never published for the model cannot be
    installed by any device: refused."""
    base = env.build("1.5.0", 7, variant="g")  # built, never published
    patch = env.build("1.6.0", 8, variant="h", base_package=base)
    unchanged(env, publish_fn(env, patch), errors.UnknownRelease, "never published")
    publish_fn(env, base)()
    publish_fn(env, patch)()
