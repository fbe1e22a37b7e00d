"""Host side of the console accounts: the store, the otpauth URI and QR, what
provisioning hands to the board, and the CLI (clear errors, nothing lost)."""
from __future__ import annotations

import base64
import hashlib
import json
import stat

import pyotp
import pytest
from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.console import store


def test_add_list_remove_and_what_provisioning_gets(tmp_path):
    e = store.add(tmp_path, "pump-v2", "tom", "technician", "a-long-password")
    assert e.uri.startswith("otpauth://totp/medsentry:tom%40pump-v2?secret=")
    assert pyotp.parse_uri(e.uri).secret == e.secret
    store.add(tmp_path, "pump-1", "tom", "admin", "another-password")  # the board's own record wins
    store.add(tmp_path, "pump-v2", "vera", "viewer", "viewer-password")
    recs = {r["name"]: r for r in store.for_board(tmp_path, "pump-1", "pump-v2")}
    assert recs["tom"]["role"] == "admin" and recs["vera"]["role"] == "viewer"
    v = recs["vera"]
    assert bytes.fromhex(v["verifier"]) == hashlib.pbkdf2_hmac(
        "sha256", b"viewer-password", bytes.fromhex(v["salt"]), v["iter"], 32)
    assert base64.b32encode(bytes.fromhex(v["totp"])).decode() == store.load(tmp_path, "pump-v2")["vera"]["totp"]
    f = tmp_path / "console" / "pump-v2.json"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600 and b"viewer-password" not in f.read_bytes()
    store.remove(tmp_path, "pump-v2", "vera")
    assert list(store.load(tmp_path, "pump-v2")) == ["tom"]


@pytest.mark.parametrize("args, msg", [
    (("pump-v2", "Tom!", "viewer", "a-long-password"), "bad user name"),
    (("pump-v2", "tom", "root", "a-long-password"), "unknown role"),
    (("pump-v2", "tom", "viewer", "short"), "at least 10"),
    (("../x", "tom", "viewer", "a-long-password"), "bad board or model"),
])
def test_refusals(tmp_path, args, msg):
    with pytest.raises(store.ConsoleError, match=msg):
        store.add(tmp_path, *args)
    assert not (tmp_path / "console" / "pump-v2.json").exists()


def test_cli_user_commands_and_qr(tmp_path):
    r = CliRunner()
    wd = ["--workdir", str(tmp_path)]
    res = r.invoke(cli, [*wd, "console", "user", "add", "pump-v2", "tom", "--role", "technician"],
                   env={"MEDSENTRY_CONSOLE_PASSWORD": "a-long-password"})
    assert res.exit_code == 0, res.output
    assert "otpauth://totp/" in res.output and "█" in res.output or "▀" in res.output
    png = tmp_path / "console" / "pump-v2-tom.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = r.invoke(cli, [*wd, "console", "user", "add", "pump-v2", "tom", "--role", "technician"],
                   env={"MEDSENTRY_CONSOLE_PASSWORD": "a-long-password"})
    assert res.exit_code == 1 and "already has an account" in res.output and "Traceback" not in res.output
    res = r.invoke(cli, [*wd, "console", "user", "list", "pump-v2"])
    assert res.output.split() == ["tom", "technician"]
    res = r.invoke(cli, [*wd, "console", "user", "list", "pump-v2", "--json"])
    assert json.loads(res.output) == [{"name": "tom", "role": "technician"}]
    res = r.invoke(cli, [*wd, "console", "user", "remove", "pump-v2", "nobody"])
    assert res.exit_code == 1 and "no account" in res.output
    res = r.invoke(cli, [*wd, "console", "no-such-board", "--user", "tom", "--code", "123456", "--exec", "status"],
                   env={"MEDSENTRY_CONSOLE_PASSWORD": "x"})
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
