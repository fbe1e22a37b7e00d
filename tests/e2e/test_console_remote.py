"""Console accounts and unlocks on a provisioned board whose UART is closed, on a
REAL sim board with a REAL Mosquitto, collector and TUF repository (the command
policy is a TUF target the board fetched):

* `medsentry console user push|remove --send-as`: an account reaches the board as a
  signed console-user command with its secrets sealed for that board; the
  technician then logs in with password + pyotp code. Attacks through the broker:
  an operator whose role may not change accounts, a payload whose role was changed
  in transit, a garbled seal, an account sealed for another board, and a replayed
  add after the remove: each refused, with a result record, and the accounts as
  they were.
* The board loses its RTC (restarted under libfaketime at 2001-01-01): TOTP is
  refused with the reason; `medsentry console BOARD --unlock-as alice` signs the
  challenge the console shows and logs in; a token by an operator without
  unlock-console, or for an earlier challenge, is refused."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pyotp
import pytest
from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.console import remote, store
from host_tools.console.session import EXIT_LOGIN, ConsoleFailure, Session
from host_tools.ops import commands as ops_commands
from host_tools.ops import envelope as E
from host_tools.ops.keys import OpsKeyring
from host_tools.ops.policy import publish_policy
from host_tools.release.quickstart import DemoPassphrases, ensure_models
from host_tools.release.session import open_session
from tests.e2e.telemetry_board_fixtures import LIBFAKETIME, board_fleet

HOST_DIR = Path(__file__).resolve().parents[1] / "host"
if str(HOST_DIR) not in sys.path:
    sys.path.insert(0, str(HOST_DIR))
from tuf_repo import serve  # noqa: E402

pytestmark = pytest.mark.skipif(LIBFAKETIME is None, reason="Debian faketime not installed")
PASS = DemoPassphrases("console-remote-e2e")
OPS_PASS = "correct horse battery staple nine"
DEVICE, OTHER, MODEL = "pump-r1", "pump-r2", "pump-v2"
HEAP = "384k"
PW = "technician-pass-1"


def _login(f, user, password=PW, code=None, token=None):
    s = Session(f.boards.status(DEVICE)["port"], timeout=20)
    try:
        s.login(user, password, code or (lambda: ""), token)
    except BaseException:
        s.close()
        raise
    return s


def _cli(f, *args, password=None):
    env = {"MEDSENTRY_KEY_PASSPHRASE_OPS_ALICE": OPS_PASS, "MEDSENTRY_KEY_PASSPHRASE_OPS_BOB": OPS_PASS}
    if password is not None:
        env["MEDSENTRY_CONSOLE_PASSWORD"] = password
    return CliRunner().invoke(cli, ["--workdir", str(f.workdir), *args], env=env)


def test_accounts_by_signed_command_and_unlock_without_a_clock(tmp_path):
    rel = tmp_path / "release"
    root = ensure_models(rel, PASS, (MODEL,))
    with serve(rel / "repository") as srv, board_fleet(tmp_path, [(DEVICE, MODEL), (OTHER, MODEL)]) as f:
        ring = OpsKeyring(f.workdir)
        ring.init()
        ring.add("alice", "admin", OPS_PASS)
        ring.add("bob", "operator", OPS_PASS)
        with open_session(rel, PASS) as s:
            publish_policy(s, ring)
        (f.workdir / "broker").mkdir(exist_ok=True)
        (f.workdir / "broker" / "address.json").write_text(json.dumps({"host": f.broker.host,
                                                                       "port": f.broker.port}))
        port = f.start_board(DEVICE, MODEL, heap=HEAP)
        cfg = {"watchdog_ms": 30000, "update": {"metadata_url": srv.url + "/metadata",
                                                "targets_url": srv.url + "/targets", "check_every_s": 3}}
        f.provision(DEVICE, port, config=cfg, tuf_root=root.read_bytes(), reset=False)
        f.boards.reset(DEVICE)
        f.wait_telemetry(DEVICE, lambda t: t.get("connected"), 60, "connected to the broker")
        f.boards.wait_for(DEVICE, lambda st: ((st.get("device") or {}).get("commands") or {}).get("policy"),
                          90, "command policy fetched through TUF")

        # 1. The account is made here and pushed: signed by alice (admin), sealed for this board.
        secret = store.add(f.workdir, DEVICE, "tom", "technician", PW).secret
        r = _cli(f, "console", "user", "push", DEVICE, "tom", "--as", "alice", "--no-prompt")
        assert r.exit_code == 0 and f"{DEVICE}: done" in r.output, r.output
        with _login(f, "tom", code=pyotp.TOTP(secret).now()) as s:
            assert '"version": "1.0.0"' in s.run("version")
            s.logout()
        stored = (f.boards.board_dir(DEVICE) / "console.log").read_bytes()
        assert PW.encode() not in stored and secret.encode() not in stored

        # 2. Attacks through the broker, each refused with its reason.
        n = len(f.db.command_results(DEVICE))
        bob = ring.private_key("bob", OPS_PASS)  # operator: may not change accounts
        eve = remote.seal_account(f.pki.device(DEVICE).active_key(), DEVICE, "eve", "admin", os.urandom(16), 1000,
                                  store.verifier("eve-password-1", b"s" * 16, 1000), os.urandom(20))
        p = E.payload("console-user", ["add", "eve", "admin", eve], ring.get("bob").keyid,
                      ops_commands.next_counter(ring, "bob"), int(time.time()), device=DEVICE)
        ops_commands.publish(f.workdir, f.broker.host, f.broker.port, DEVICE, E.seal(bob, p))
        good = ops_commands.sign(ring, "alice", OPS_PASS, DEVICE, "console-user",
                                 remote.console_user_args(f.workdir, DEVICE, "tom"))
        forged = json.loads(good.envelope)
        forged["payload"] = forged["payload"].replace('"technician"', '"admin"')
        ops_commands.publish(f.workdir, f.broker.host, f.broker.port, DEVICE, json.dumps(forged).encode())
        args = remote.console_user_args(f.workdir, DEVICE, "tom")
        args[3] = args[3][:60] + ("0" if args[3][60] != "0" else "1") + args[3][61:]  # one nibble of ciphertext
        garbled = ops_commands.sign(ring, "alice", OPS_PASS, DEVICE, "console-user", args)
        ops_commands.publish(f.workdir, f.broker.host, f.broker.port, DEVICE, garbled.envelope)
        store.add(f.workdir, OTHER, "tom", "admin", PW)  # the same name, for another board, as admin
        other = remote.console_user_args(f.workdir, OTHER, "tom")
        moved = ops_commands.sign(ring, "alice", OPS_PASS, DEVICE, "console-user", other)
        ops_commands.publish(f.workdir, f.broker.host, f.broker.port, DEVICE, moved.envelope)
        rs = f.results_after(DEVICE, n, 4)
        assert [(x["result"], (x["reason"] or "").split(":")[0]) for x in rs] == [
            ("refused", "wrong role"), ("refused", "bad signature"),
            ("refused", "sealed account refused"), ("refused", "sealed account refused")], rs
        with pytest.raises(ConsoleFailure) as e:
            _login(f, "eve", password="eve-password-1", code="000000").close()
        assert e.value.code == EXIT_LOGIN
        time.sleep(1.2)  # the failure's delay (unknown names share one counter)
        with _login(f, "tom", code=pyotp.TOTP(secret).at(time.time() + 30)) as s:
            assert "tom (technician)" in s.run("whoami")  # still a technician

            # 3. Removed by signed command while his session is open: it ends at his
            #    next command; the earlier add replayed stays refused.
            r = _cli(f, "console", "user", "remove", DEVICE, "tom", "--send-as", "alice", "--no-prompt")
            assert r.exit_code == 0 and f"{DEVICE}: done" in r.output, r.output
            assert "account tom removed: logged out" in s.run("whoami")
        n = len(f.db.command_results(DEVICE))
        ops_commands.publish(f.workdir, f.broker.host, f.broker.port, DEVICE, good.envelope)
        rep = f.results_after(DEVICE, n, 1)[0]
        assert rep["result"] == "refused" and rep["reason"].startswith("replayed"), rep
        with pytest.raises(ConsoleFailure):
            _login(f, "tom", code=pyotp.TOTP(secret).now()).close()

        # 4. Added again with --send-as, then the RTC is lost: the board restarts at 2001-01-01.
        r = _cli(f, "console", "user", "add", DEVICE, "tina", "--role", "technician", "--send-as", "alice",
                 "--no-prompt", password=PW)
        assert r.exit_code == 0 and f"{DEVICE}: done" in r.output, r.output
        f.boards.stop(DEVICE)
        f.start_board(DEVICE, MODEL, env={"LD_PRELOAD": LIBFAKETIME, "FAKETIME": "@2001-01-01 00:00:00"})
        tina = pyotp.TOTP(store.load(f.workdir, DEVICE)["tina"]["totp"])
        with pytest.raises(ConsoleFailure) as e:  # no token offered: the reason, no login
            _login(f, "tina", code=tina.now()).close()
        assert "board clock unset" in str(e.value), e.value

        # A token by bob (operator: no unlock-console), and one for an earlier challenge.
        seen = []

        def by_bob(dev, ch):
            assert dev == DEVICE
            seen.append(remote.unlock_token(ring, "alice", OPS_PASS, DEVICE, "tina", ch))
            return ring.get("bob").keyid[:16] + ":" + bob.sign(remote.unlock_message(DEVICE, "tina", ch)).hex()

        with pytest.raises(ConsoleFailure) as e:
            _login(f, "tina", token=by_bob).close()
        assert "unlock token refused: wrong role" in str(e.value), e.value
        time.sleep(1.2)
        with pytest.raises(ConsoleFailure) as e:
            _login(f, "tina", token=lambda dev, ch: seen[0]).close()  # alice's, but for the last challenge
        assert "unlock token refused: bad signature" in str(e.value), e.value
        time.sleep(2.2)

        r = _cli(f, "console", DEVICE, "--user", "tina", "--unlock-as", "alice", "--no-prompt",
                 "--exec", "version", "--json", password=PW)
        assert r.exit_code == 0, r.output
        out = json.loads(r.output.strip().splitlines()[-1])
        assert out["ok"] and out["result"]["version"] == "1.0.0", out
