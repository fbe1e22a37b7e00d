# Console accounts on a provisioned board through the signed command
# `console-user` (agent/console/remote.py behind the command verifier), and the
# one-time unlock token that stands in for TOTP when the board clock is unset
# (the same module, behind the shell). Envelopes, sealed accounts and
# tokens come from the host code (data/commands/make_console_fixtures.py).
import binascii
import json

import devtest
from agent.console import auth as acc
from agent.console import remote
from agent.console.shell import Shell
from agent.security import events
from agent.security.commands_run import CommandRunner

DK = bytes(range(16))


def _fx():
    with open(devtest.data_path("commands/console.json")) as f:
        return json.loads(f.read())


def _ident(fx):
    return {"device_id": fx["device"], "kid": binascii.unhexlify(fx["tel"]["kid"]),
            "key": binascii.unhexlify(fx["tel"]["key"])}


def _runner(fx, d):
    results = []
    r = CommandRunner(d, fx["device"], fx["model"], lambda: fx["now"], results.append)
    r.install_policy(json.dumps(fx["policy"]).encode())
    ident = _ident(fx)
    r.actions["console-user"] = lambda args: remote.apply(d, DK, ident, args)
    return r


def _cases(fx):
    out = {}
    for name, env, want in fx["cases"]:
        out[name] = (env.encode(), want)
    return out


def _accounts(d):
    return acc.load(d)


def test_every_console_user_case_gets_its_answer():
    fx = _fx()
    events.set_sink(lambda k, s, dt: None)
    for name, (env, want) in _cases(fx).items():
        d = devtest.tmpdir()
        res = _runner(fx, d).handle(env)
        if name == "remove_ok":
            assert res["result"] == "refused" and "no account tom" in res["reason"], res
            continue
        if want is None:
            assert res["result"] == "done", (name, res)
            assert list(_accounts(d)) == ["tom"] and _accounts(d)["tom"]["role"] == "technician", name
        else:
            assert res["result"] == "refused" and want in res["reason"], (name, res, want)
            assert _accounts(d) == {}, name  # nothing written
    events.set_sink(None)


def _shell(fx, d, now, challenge=None):
    out = bytearray()
    ch = binascii.unhexlify(challenge or fx["challenge"])
    sh = Shell(d, DK, lambda: now[0], {}, out.extend, device=(fx["device"], fx["model"]), entropy=lambda n: ch)
    return sh, out


def _take(out):
    s = bytes(out).decode()
    out[:] = b""
    return s


def _totp_login(fx, sh, now):
    code = acc.at(binascii.unhexlify(fx["totp"]), now)
    sh.feed(("tom\r%s\r%s\r" % (fx["password"], code)).encode())


def _added(fx):
    # (cases, state dir, runner) with tom added by the signed command
    c = _cases(fx)
    d = devtest.tmpdir()
    r = _runner(fx, d)
    assert r.handle(c["add_ok"][0])["result"] == "done"
    return c, d, r


def test_an_added_account_logs_in_then_a_remove_and_a_replay_keep_it_out():
    fx = _fx()
    c, d, r = _added(fx)
    # The secrets are sealed under the device key on flash: neither the
    # verifier nor the TOTP key is there in the clear.
    with open(d + "/console/accounts.json") as f:
        text = f.read()
    assert fx["totp"] not in text
    rec = _accounts(d)["tom"]
    assert acc.check(_accounts(d), DK, "tom", fx["password"], acc.at(binascii.unhexlify(fx["totp"]), fx["now"]),
                     fx["now"], -1)[0]
    assert not acc.check(_accounts(d), DK, "tom", "wrong-pass-1", acc.at(binascii.unhexlify(fx["totp"]), fx["now"]),
                         fx["now"], -1)[0]
    assert rec["iter"] == 50
    now = [fx["now"]]
    sh, out = _shell(fx, d, now)
    _totp_login(fx, sh, now[0])
    assert "welcome tom (technician)" in _take(out)
    sh.feed(b"logout\r")
    assert r.handle(c["remove_ok"][0])["result"] == "done"
    assert _accounts(d) == {}
    # The add again (replayed): its counter is spent.
    res = r.handle(c["add_ok"][0])
    assert res["result"] == "refused" and res["reason"].startswith("replayed"), res
    assert _accounts(d) == {}


def _enrolled(fx):
    d = devtest.tmpdir()
    assert _runner(fx, d).handle(_cases(fx)["add_ok"][0])["result"] == "done"
    with open(d + "/command-policy.json", "w") as f:
        f.write(json.dumps(fx["policy"]))
    return d


def _token_login(fx, d, token, password=None, challenge=None):
    # Board clock unset (1 Jan 2001): TOTP cannot be checked; the shell shows
    # a challenge (here the fixture's, in place of os.urandom) and asks for a token.
    now = [978307200]
    challenge = challenge or fx["challenge"]
    sh, out = _shell(fx, d, now, challenge)
    sh.feed(("tom\r%s\r" % (password or fx["password"])).encode())
    shown = _take(out)
    assert "board clock unset" in shown and challenge in shown and "unlock token: " in shown, shown
    assert sh.stage == "token"
    sh.feed(token.encode() + b"\r")
    return sh, _take(out)


def test_unlock_tokens_when_the_clock_is_unset():
    fx = _fx()
    seen = []
    events.set_sink(lambda k, s, dt: seen.append((k, dt)))
    for name, token, want in fx["tokens"]:
        d = _enrolled(fx)
        sh, text = _token_login(fx, d, token)
        if want is None:
            assert "welcome tom (technician)" in text and sh.stage == "shell", (name, text)
        else:
            assert "login incorrect (unlock token refused: %s)" % want in text, (name, text)
            assert sh.stage == "user"
    events.set_sink(None)
    assert ("console_unlock_token", {"user": "tom", "result": "ok"}) in seen
    assert ("console_unlock_token", {"user": "tom", "result": "wrong role"}) in seen


def test_a_token_needs_the_password_and_opens_one_login_only():
    fx = _fx()
    ok = fx["tokens"][0][1]
    d = _enrolled(fx)
    sh, text = _token_login(fx, d, ok, password="wrong-pass-1")
    assert "login incorrect" in text and "token refused" not in text, text
    # The same token at the next login: the challenge is new each time (a
    # random one; here another fixed one), so the old token does not verify.
    d = _enrolled(fx)
    sh, text = _token_login(fx, d, ok, challenge="ab" * 16)
    assert "unlock token refused: bad signature" in text, text
    # A TOTP code typed at the token prompt is no token.
    d = _enrolled(fx)
    sh, text = _token_login(fx, d, acc.at(binascii.unhexlify(fx["totp"]), fx["now"]))
    assert "unlock token refused: malformed token" in text, text


def test_token_failures_count_toward_the_lockout():
    fx = _fx()
    d = _enrolled(fx)
    bad = fx["tokens"][2][1]  # operator role: refused
    for i in range(5):
        # Each attempt: a fresh shell (the delay between failures is waited out
        # by moving the board clock ahead: the counters use it).
        now = [978307200 + 100 * i]
        sh, out = _shell(fx, d, now)
        sh.feed(("tom\r%s\r%s\r" % (fx["password"], bad)).encode())
        text = _take(out)
    assert "account locked" in text, text
    now = [978307200 + 500]
    sh, text = _token_login(fx, d, fx["tokens"][0][1])
    assert "login refused: account locked" in text, text


def test_no_policy_on_the_board_no_token_login():
    fx = _fx()
    d = devtest.tmpdir()
    assert _runner(fx, d).handle(_cases(fx)["add_ok"][0])["result"] == "done"
    import os

    os.remove(d + "/command-policy.json")
    sh, text = _token_login(fx, d, fx["tokens"][0][1])
    assert "unlock token refused: no command policy on this board" in text, text


def test_under_quarantine_a_token_is_the_signed_unlock():
    # Quarantined with the clock unset: a command's expiry cannot be checked,
    # so the challenge-bound token is what opens one login.
    from agent.security import flags

    fx = _fx()
    d = _enrolled(fx)
    flags.set_quarantine(d, True)
    sh, text = _token_login(fx, d, fx["tokens"][0][1])
    assert "welcome tom (technician)" in text, text
    # With the clock set, quarantine still refuses a password + TOTP login.
    now = [fx["now"]]
    sh, out = _shell(fx, d, now)
    _totp_login(fx, sh, fx["now"])
    assert "login refused: device quarantined" in _take(out)


def test_a_removed_account_is_logged_out_at_its_next_command():
    fx = _fx()
    c, d, r = _added(fx)
    now = [fx["now"]]
    sh, out = _shell(fx, d, now)
    _totp_login(fx, sh, now[0])
    assert "welcome tom" in _take(out)
    sh.feed(b"whoami\r")
    assert "tom (technician)" in _take(out)
    assert r.handle(c["remove_ok"][0])["result"] == "done"  # while the session is open
    sh.feed(b"whoami\r")
    text = _take(out)
    assert "account tom removed: logged out" in text and text.endswith("login: ") and sh.stage == "user", text
