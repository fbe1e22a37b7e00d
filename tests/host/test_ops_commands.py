"""Operator keys, the command policy and command signing on the host
(host_tools/ops): key files encrypted like release keys (mode 0600), roles
enforced before signing, counters that only rise, bad input refused with a
clear message (never a traceback), and envelopes the device's own verifier
(agent/security/commands.py, run here on CPython) accepts or refuses."""
from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner

from agent.security import commands as device_commands
from host_tools import keyfile
from host_tools.cli.main import cli
from host_tools.ops import commands as ops_commands
from host_tools.ops import envelope as E
from host_tools.ops.keys import OpsError, OpsKeyring

PW = "violet-anchor-tundra-42"


@pytest.fixture
def ring(tmp_path):
    r = OpsKeyring(tmp_path)
    r.init()
    r.add("alice", "admin", PW)
    r.add("bob", "operator", PW)
    return r


def test_key_files_are_encrypted_and_private(ring):
    data = ring.key_path("alice").read_bytes()
    assert keyfile.is_encrypted(data) and b"scrypt" in __import__("base64").decodebytes(data.split(b"\n", 1)[1]
                                                                                       .rsplit(b"-----END", 1)[0])
    with pytest.raises(keyfile.BadPassphrase):
        keyfile.load(data, None)
    assert stat.S_IMODE(os.stat(ring.key_path("alice")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ring.file).st_mode) == 0o600
    with pytest.raises(OpsError, match="wrong passphrase"):
        ring.private_key("alice", "not-the-passphrase-at-all-77")


def test_weak_passphrase_and_bad_names_refused(ring):
    from host_tools.release.errors import WeakPassphrase

    with pytest.raises(WeakPassphrase):
        ring.add("carol", "admin", "password1234")
    with pytest.raises(OpsError, match="unknown role"):
        ring.add("carol", "god", PW)
    with pytest.raises(OpsError, match="operator name"):
        ring.add("../etc", "admin", PW)
    with pytest.raises(OpsError, match="exists"):
        ring.add("alice", "admin", PW)


def test_policy_and_device_verification(ring):
    pol = device_commands.load_policy(json.dumps(ring.policy("pump-v2")).encode(), "pump-v2")
    sent = ops_commands.sign(ring, "alice", PW, "pump-1", "quarantine", ["on"])
    c = device_commands.verify(pol, sent.envelope, "pump-1", "pump-v2", sent.iat, {})
    assert c["cmd"] == "quarantine" and c["args"] == ["on"] and c["ctr"] == sent.ctr
    # Revoked: the device says so once the new policy is in force.
    ring.revoke("bob")
    bob_sent = ring.policy("pump-v2")
    assert ring.get("bob").keyid in bob_sent["revoked"] and ring.get("bob").keyid not in bob_sent["keys"]
    with pytest.raises(OpsError, match="revoked"):
        ops_commands.sign(ring, "bob", PW, "pump-1", "report-now", [])


def test_roles_and_arguments_checked_before_signing(ring):
    with pytest.raises(OpsError, match="may not run reboot"):
        ops_commands.sign(ring, "bob", PW, "pump-1", "reboot", [])
    for cmd, args in (("format-flash", []), ("quarantine", ["maybe"]), ("unlock-console", ["999"]),
                      ("unlock-console", ["ten"]), ("reboot", ["now"])):
        with pytest.raises(E.CommandInputError):
            ops_commands.sign(ring, "alice", PW, "pump-1", cmd, args)


def test_counters_only_rise(ring):
    a = [ops_commands.next_counter(ring, "alice") for _ in range(5)]
    assert a == sorted(set(a))


def test_cli_bad_input_is_a_clear_error(tmp_path, monkeypatch):
    runner = CliRunner()
    wd = str(tmp_path)
    r = runner.invoke(cli, ["--workdir", wd, "ops", "keys", "list"])
    assert r.exit_code == 1 and "ops keys init" in r.output and "Traceback" not in r.output
    assert runner.invoke(cli, ["--workdir", wd, "ops", "keys", "init"]).exit_code == 0
    monkeypatch.setenv("MEDSENTRY_KEY_PASSPHRASE_OPS_ALICE", PW)
    r = runner.invoke(cli, ["--workdir", wd, "ops", "keys", "add", "alice", "--role", "admin", "--no-prompt"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["--workdir", wd, "ops", "keys", "list"])
    assert "alice" in r.output and "admin" in r.output
    r = runner.invoke(cli, ["--workdir", wd, "ops", "keys", "list", "--json"])
    ops = json.loads(r.output)
    assert [(o["name"], o["role"], o["revoked"]) for o in ops["operators"]] == [("alice", "admin", False)]
    assert ops["roles"]["admin"] == ["*"]  # admins may send every command
    for argv, msg in ((["command", "send", "pump-1", "format-flash", "--as", "alice", "--port", "1"], "unknown command"),
                      (["command", "send", "pump-1", "reboot", "--as", "mallory", "--port", "1"], "no operator"),
                      (["command", "send", "pump-1", "report-now", "--as", "alice", "--port", "1"], "operator TLS"),
                      (["ops", "keys", "revoke", "mallory"], "no operator")):
        r = runner.invoke(cli, ["--workdir", wd, *argv])
        assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output, (argv, r.output)
    r = runner.invoke(cli, ["--workdir", wd, "command", "list"])
    assert r.exit_code == 0
    r = runner.invoke(cli, ["--workdir", wd, "command", "list", "--json"])
    assert r.exit_code == 0 and json.loads(r.output) == [], r.output
