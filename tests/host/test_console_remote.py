"""Host side of console accounts for provisioned boards (host_tools/console/remote.py,
`medsentry console user push|add --send-as|remove --send-as`, `console unlock-token`):
arguments refused as the board would refuse them, tokens only from operators whose
role may unlock consoles, and the device fixtures current with this code."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from host_tools.cli.main import cli
from host_tools.console import remote, store
from host_tools.ops import envelope as E
from host_tools.ops.keys import OpsError, OpsKeyring
from host_tools.pki import FleetPKI

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "device" / "data" / "commands"
PASS = "correct horse battery staple nine"
CH = "00112233445566778899aabbccddeeff"


def test_device_fixtures_are_current(tmp_path):
    for name in ("make_fixtures.py", "make_console_fixtures.py"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    subprocess.run([sys.executable, "make_console_fixtures.py"], cwd=tmp_path, check=True,
                   env={"PYTHONPATH": f"{REPO}:{tmp_path}", "PATH": "/usr/bin:/bin"})
    assert (tmp_path / "console.json").read_text() == (FIXTURES / "console.json").read_text()


@pytest.mark.parametrize("args, why", [
    (["add", "tom", "technician"], "takes add NAME ROLE SEALED"),
    (["add", "Tom", "technician", "00"], "bad user name"),
    (["add", "tom", "root", "00"], "unknown role"),
    (["add", "tom", "admin", "zz"], "must be hex"),
    (["remove"], "takes add NAME ROLE SEALED"),
    (["rename", "tom"], "takes add NAME ROLE SEALED"),
])
def test_console_user_arguments_refused_as_on_the_board(args, why):
    with pytest.raises(E.CommandInputError, match=why):
        E.parse_args("console-user", args)


@pytest.fixture
def ring(tmp_path):
    r = OpsKeyring(tmp_path)
    r.init()
    r.add("alice", "admin", PASS)
    r.add("bob", "operator", PASS)
    r.add("carol", "biomed", PASS)
    return r


def test_unlock_tokens_only_from_roles_that_may_unlock(ring):
    for who in ("alice", "carol"):
        tok = remote.unlock_token(ring, who, PASS, "pump-1", "tom", CH.upper())
        prefix, sig = tok.split(":")
        op = ring.get(who)
        assert prefix == op.keyid[:16] and len(sig) == 128
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(op.public)).verify(
            bytes.fromhex(sig), remote.unlock_message("pump-1", "tom", CH))
    with pytest.raises(OpsError, match="may not unlock consoles"):
        remote.unlock_token(ring, "bob", PASS, "pump-1", "tom", CH)
    with pytest.raises(OpsError, match="bad challenge"):
        remote.unlock_token(ring, "alice", PASS, "pump-1", "tom", CH[:-2])
    ring.revoke("carol")
    with pytest.raises(OpsError, match="revoked"):
        remote.unlock_token(ring, "carol", PASS, "pump-1", "tom", CH)


def test_an_account_is_sealed_for_its_board_only(tmp_path):
    pki = FleetPKI(tmp_path)
    pki.init()
    pki.issue("pump-1", "pump-v2")
    store.add(tmp_path, "pump-v2", "tom", "technician", "technician-pass-1")
    args = remote.console_user_args(tmp_path, "pump-1", "tom")  # the model's account
    assert args[:3] == ["add", "tom", "technician"]
    tk = pki.device("pump-1").active_key()
    blob = bytes.fromhex(args[3])
    assert blob[:8] == tk.kid
    rec = store.load(tmp_path, "pump-v2")["tom"]
    assert rec["verifier"] not in args[3] and bytes.fromhex(rec["salt"]).hex() not in args[3]
    with pytest.raises(store.ConsoleError, match="no account for pump-1"):
        remote.console_user_args(tmp_path, "pump-1", "ada")


def test_cli_refuses_before_asking_anything(tmp_path):
    FleetPKI(tmp_path).init()
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path), "console", "user", "add", "pump-9", "tom",
                                 "--role", "technician", "--send-as", "alice", "--no-prompt"])
    assert r.exit_code == 1 and "pump-9" in r.output and "password" not in r.output, r.output
    assert store.load(tmp_path, "pump-9") == {}
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path), "console", "user", "push", "pump-9", "tom",
                                 "--as", "alice", "--no-prompt"])
    assert r.exit_code == 1 and "Error" in r.output and "Traceback" not in r.output, r.output


def test_cli_prints_a_token(tmp_path, ring):
    env = {"MEDSENTRY_KEY_PASSPHRASE_OPS_ALICE": PASS}
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path), "console", "unlock-token", "pump-1", "tom", CH,
                                 "--as", "alice", "--no-prompt"], env=env)
    assert r.exit_code == 0, r.output
    assert r.output.strip() == remote.unlock_token(ring, "alice", PASS, "pump-1", "tom", CH)
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path), "console", "unlock-token", "pump-1", "tom", CH,
                                 "--as", "bob", "--no-prompt"], env={"MEDSENTRY_KEY_PASSPHRASE_OPS_BOB": PASS})
    assert r.exit_code == 1 and "may not unlock consoles" in r.output, r.output


def test_a_send_that_reaches_no_broker_keeps_the_account_and_says_how_to_resend(tmp_path, ring):
    pki = FleetPKI(tmp_path)
    pki.init()
    pki.issue("pump-1", "pump-v2")
    pki.issue_client("operator")
    env = {"MEDSENTRY_KEY_PASSPHRASE_OPS_ALICE": PASS, "MEDSENTRY_CONSOLE_PASSWORD": "technician-pass-1"}
    r = CliRunner().invoke(cli, ["--workdir", str(tmp_path), "console", "user", "add", "pump-1", "tom",
                                 "--role", "technician", "--send-as", "alice", "--no-prompt", "--host", "127.0.0.1",
                                 "--port", "9"], env=env)
    assert r.exit_code == 1 and "cannot reach the broker" in r.output, r.output
    assert "medsentry console user push pump-1 tom --as alice" in r.output, r.output
    assert "tom" in store.load(tmp_path, "pump-1")
