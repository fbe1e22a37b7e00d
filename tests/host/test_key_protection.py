"""Issue 10.3 (host keys): release key files and the fleet CA key are encrypted
with scrypt under a passphrase that must pass the policy; weak entries are
asked again; old key files keep working and `rekey` upgrades them."""
from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

sys.path.insert(0, str(Path(__file__).parent))
from test_release_support import make_workdir  # noqa: E402

from host_tools import keyfile  # noqa: E402
from host_tools.cli.main import cli  # noqa: E402
from host_tools.passphrase import weakness  # noqa: E402
from host_tools.pki import FleetPKI, PkiError  # noqa: E402
from host_tools.pki.ca_key import CA_PASSPHRASE_ENV  # noqa: E402
from host_tools.release import errors  # noqa: E402
from host_tools.release.keys import KeyStore, env_name  # noqa: E402
from host_tools.release.layout import Layout  # noqa: E402
from host_tools.release.refresh import refresh  # noqa: E402

GOOD = "violet-anchor-tundra-42"


@pytest.mark.parametrize("weak", ["12345678", "password1234", "aaaaaaaaaaaaaaaa", "qwertyuiop12",
                                  "abcdefghijklmnop", "Secret-Secret-Secret"])
def test_weak_passphrases_are_refused(weak):
    assert weakness(weak)
    with pytest.raises(errors.WeakPassphrase):
        KeyStore(Layout.of("/nonexistent"), _Fixed(weak)).new_key("root-1", "ed25519")


@pytest.mark.parametrize("strong", [GOOD, "correct horse battery staple", "Tr0ub4dor&3-mellow"])
def test_strong_passphrases_pass(strong):
    assert weakness(strong) is None


class _Fixed:
    def __init__(self, pw):
        self.pw = pw

    def existing(self, name):
        return self.pw

    def new(self, name, rotation=False):
        return self.pw


def test_new_key_files_use_scrypt_at_full_strength(tmp_path, monkeypatch):
    """The default work factor (not the test-only one): N=2^17, r=8, p=1."""
    monkeypatch.delenv(keyfile.FAST_KDF_ENV, raising=False)
    store = KeyStore(Layout.of(tmp_path), _Fixed(GOOD))
    key = store.new_key("timestamp", "ed25519")
    pem = store.key_files(key)[0].data
    assert pem.startswith(b"-----BEGIN MEDSENTRY ENCRYPTED PRIVATE KEY-----")
    loaded = keyfile.load(pem, GOOD)
    assert loaded.kdf == "scrypt N=131072 r=8 p=1" and not loaded.needs_upgrade
    der = key.private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                        serialization.NoEncryption())
    assert der not in pem and base64.b64encode(der) not in pem
    with pytest.raises(keyfile.BadPassphrase):
        keyfile.load(pem, GOOD + "x")
    # the scrypt parameters are authenticated: lowering N makes the file unusable
    body = pem.split(b"\n", 1)[1].rsplit(b"-----END", 1)[0]
    doc = json.loads(base64.b64decode(body))
    doc["n"] = 2
    forged = keyfile.BEGIN + b"\n" + base64.encodebytes(json.dumps(doc).encode()) + keyfile.END
    with pytest.raises(keyfile.BadPassphrase):
        keyfile.load(forged, GOOD)


def test_init_asks_again_on_weak_or_mismatched_passphrases(tmp_path):
    answers = ["12345678", "password1234", "first-try-ok-77", "typo-try-ok-77",
               "root-one-walnut-ember", "root-one-walnut-ember"]
    for n in ["root-2", "root-3", "targets", "snapshot", "timestamp"]:
        answers += [f"{n}-walnut-ember-9"] * 2
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path / "wd"), "keys", "init"],
                           input="\n".join(answers) + "\n", env={})
    assert r.exit_code == 0, r.output
    assert "too short: at least 12 characters" in r.output
    assert "too easy to guess" in r.output
    assert "do not match" in r.output
    assert "Traceback" not in r.output


def test_weak_passphrase_from_the_environment_is_a_clear_error(tmp_path):
    env = {env_name(n): f"{n}-walnut-ember-9" for n in ["root-1", "root-2", "root-3", "targets", "snapshot"]}
    env[env_name("timestamp")] = "12345678"
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path / "wd"), "keys", "init", "--no-prompt"], env=env)
    assert r.exit_code == 1 and "passphrase for key 'timestamp' is too short" in r.output
    assert not (tmp_path / "wd" / "keys").exists()


def _legacy(path: Path, passphrase: str, new_passphrase: str) -> None:
    """Rewrite a key file as an old medsentry did: PKCS#8, PBKDF2 2048 rounds."""
    key = keyfile.load(path.read_bytes(), passphrase).key
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(new_passphrase.encode())))


def test_old_key_files_keep_working_and_rekey_upgrades_them(tmp_path, monkeypatch):
    env = make_workdir(tmp_path, models=())
    store = KeyStore(Layout.of(env.workdir), env.pw)
    files = {name: pem for name, pem in store.index().values()}
    _legacy(files["timestamp"], env.pw.current["timestamp"], env.pw.current["timestamp"])
    _legacy(files["snapshot"], env.pw.current["snapshot"], "12345678")  # weak, as old medsentry allowed
    env.pw.current["snapshot"] = "12345678"
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in files["timestamp"].read_bytes()
    with env.session() as s:  # old files still sign
        refresh(s, margin=__import__("datetime").timedelta(days=3650))

    monkeypatch.delenv(keyfile.FAST_KDF_ENV, raising=False)  # rekey to the real default
    runner = CliRunner()
    base = ["--workdir", str(env.workdir), "keys", "rekey", "--no-prompt"]
    r = runner.invoke(cli, [*base, "timestamp", "snapshot"], env=env.pw.env())
    assert r.exit_code == 1 and "MEDSENTRY_NEW_KEY_PASSPHRASE_SNAPSHOT" in r.output  # weak: must change
    assert files["snapshot"].read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY")
    r = runner.invoke(cli, [*base, "timestamp", "snapshot"],
                      env={**env.pw.env(), env_name("snapshot", new=True): "snapshot-walnut-ember-9"})
    assert r.exit_code == 0, r.output
    for name in ("timestamp", "snapshot"):
        assert f"{name}: PBKDF2 (legacy PKCS#8, 2048 iterations) -> scrypt N=131072 r=8 p=1" in r.output
    r = runner.invoke(cli, [*base, "timestamp"], env=env.pw.env())
    assert r.exit_code == 0 and "timestamp: already current" in r.output, r.output
    env.pw.current["snapshot"] = "snapshot-walnut-ember-9"
    for name in ("timestamp", "snapshot"):
        assert files[name].read_bytes().startswith(keyfile.BEGIN)
    with env.session() as s:
        refresh(s, margin=__import__("datetime").timedelta(days=3650))
    env.pw.wrong.add("timestamp")
    r = runner.invoke(cli, [*base, "timestamp"], env={**env.pw.env(), env_name("timestamp"): "not-the-one"})
    assert r.exit_code == 1 and "wrong passphrase for key 'timestamp'" in r.output


def test_fleet_ca_key_is_encrypted(tmp_path, monkeypatch):
    pki = FleetPKI(tmp_path / "w", "ca-walnut-ember-tundra")
    pki.init()
    data = pki.ca_key_path.read_bytes()
    assert data.startswith(keyfile.BEGIN)
    with pytest.raises((TypeError, ValueError)):
        serialization.load_pem_private_key(data, None)
    with pytest.raises(keyfile.BadPassphrase):
        keyfile.load(data, None)
    assert oct(pki.ca_key_path.stat().st_mode & 0o777) == "0o600"
    # the online keys stay unencrypted (services use them unattended), mode 0600
    for path in (pki.server_key_path, pki.client_identity("collector").key):
        assert b"BEGIN PRIVATE KEY" in path.read_bytes() and path.stat().st_mode & 0o077 == 0

    with pytest.raises(PkiError, match="wrong passphrase for the fleet CA key"):
        FleetPKI(tmp_path / "w", "not-the-passphrase").issue("pump-1", "pump-v2")
    monkeypatch.delenv(CA_PASSPHRASE_ENV, raising=False)
    with pytest.raises(PkiError, match=CA_PASSPHRASE_ENV):
        FleetPKI(tmp_path / "w").issue("pump-1", "pump-v2")
    assert FleetPKI(tmp_path / "w", "ca-walnut-ember-tundra").issue("pump-1", "pump-v2").serial
    with pytest.raises(PkiError, match="too short"):
        FleetPKI(tmp_path / "x", "12345678").init()


def test_pki_cli_asks_for_the_ca_passphrase(tmp_path, monkeypatch):
    monkeypatch.delenv(CA_PASSPHRASE_ENV, raising=False)
    runner = CliRunner()
    wd = ["--workdir", str(tmp_path / "w"), "pki"]
    r = runner.invoke(cli, [*wd, "init"], input="12345678\nca-walnut-ember-tundra\nca-walnut-ember-tundra\n")
    assert r.exit_code == 0 and "too short" in r.output, r.output
    r = runner.invoke(cli, [*wd, "issue", "pump-1", "--model", "pump-v2"], input="wrong-passphrase-here\n")
    assert r.exit_code == 1 and "Error: wrong passphrase for the fleet CA key" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(cli, [*wd, "issue", "pump-1", "--model", "pump-v2"],
                      env={CA_PASSPHRASE_ENV: "ca-walnut-ember-tundra"})
    assert r.exit_code == 0, r.output


def test_old_unencrypted_ca_key_works_and_rekey_encrypts_it(tmp_path):
    pki = FleetPKI(tmp_path / "w", "ca-walnut-ember-tundra")
    pki.init()
    key = keyfile.load(pki.ca_key_path.read_bytes(), "ca-walnut-ember-tundra").key
    pki.ca_key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    FleetPKI(tmp_path / "w", "ignored-for-plain-keys").issue("pump-1", "pump-v2")
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path / "w"), "pki", "rekey"],
                           env={CA_PASSPHRASE_ENV: "ca-walnut-ember-tundra"})
    assert r.exit_code == 0 and "none (unencrypted) -> scrypt" in r.output, r.output
    with pytest.raises(keyfile.BadPassphrase):
        keyfile.load(pki.ca_key_path.read_bytes(), None)
    assert FleetPKI(tmp_path / "w", "ca-walnut-ember-tundra").issue("pump-2", "pump-v2").serial
