# The login shell: password + TOTP login, replay refused, lockout, every role
# against every command, idle timeout, no echo of secrets, and a fuzzed line
# editor that never crashes or logs in.
import json
import os

import devtest
from agent.console import auth as accounts
from agent.console import auth as mac
from agent.console import auth as totp
from agent.console import shell as commands
from agent.console.shell import Shell
from agent.console import lockout

DK = bytes(range(16))
KEY = b"12345678901234567890"
NOW = 1800000015
PW = {"vera": "viewer-pass", "tom": "tech-pass", "ada": "admin-pass"}
ROLE = {"vera": "viewer", "tom": "technician", "ada": "admin"}
ITER = 50


class Board:
    def __init__(self):
        self.now = NOW
        self.ms = 0
        self.out = bytearray()
        self.calls = []
        self.ops = {}
        for name in commands.COMMANDS:
            self.ops[name] = self._op(name)

    def _op(self, name):
        def op(*args):
            self.calls.append(name)
            return {"op": name, "args": list(args)}
        return op

    def write(self, b):
        self.out += b

    def take(self):
        s = bytes(self.out).decode()
        self.out = bytearray()
        return s


def _setup():
    d = devtest.tmpdir()
    devtest._mkdirs(d + "/console")
    users = {}
    for name in PW:
        salt = os.urandom(16)
        v = mac.pbkdf2_sha256(PW[name].encode(), salt, ITER)
        users[name] = accounts.make_record(DK, name, ROLE[name], salt, ITER, v, KEY + name.encode())
    accounts.save(d, users)
    b = Board()
    sh = Shell(d, DK, lambda: b.now, b.ops, b.write, idle_ms=60000, ticks=lambda: b.ms)
    sh.start()
    return d, b, sh


def _login(b, sh, name, pw=None, code=None):
    if code is None:
        code = totp.at(KEY + name.encode(), b.now)
    sh.feed((name + "\r" + (pw if pw is not None else PW[name]) + "\r" + code + "\r").encode())
    return b.take()


def test_login_ok_no_echo_and_replay_refused():
    d, b, sh = _setup()
    b.take()
    out = _login(b, sh, "tom")
    assert "welcome tom (technician)" in out, out
    assert PW["tom"] not in out and totp.at(KEY + b"tom", b.now) not in out
    assert "tom@medsentry$ " in out
    sh.feed(b"version\r")
    assert '"op": "version"' in b.take()
    sh.feed(b"logout\r")
    assert "login: " in b.take()
    out = _login(b, sh, "tom")  # same code again, same step: a replay
    assert "login incorrect" in out and sh.stage == "user"
    b.now += 30
    assert "welcome tom" in _login(b, sh, "tom")
    # accounts on flash hold no password nor TOTP key in the clear
    raw = open(d + "/console/accounts.json", "rb").read()
    assert b"tech-pass" not in raw and KEY not in raw


def test_totp_window_edges():
    d, b, sh = _setup()
    k = KEY + b"vera"
    step = NOW // 30
    for delta, ok in ((-1, True), (1, True), (-2, False), (2, False)):
        b.now += 300  # a later step each time (no replay, delays over)
        step = b.now // 30
        out = _login(b, sh, "vera", code=totp.hotp(k, step + delta))
        assert ("welcome" in out) == ok, (delta, out)
        if ok:
            sh.feed(b"logout\r")
            b.take()


def test_wrong_code_locks_and_the_lock_holds_across_a_reset():
    d, b, sh = _setup()
    for i in range(lockout.MAX_FAILS):
        out = _login(b, sh, "tom", code="000000")
        b.now += 40
    assert "account locked" in out
    assert sh.counts == {"ok": 0, "failed": lockout.MAX_FAILS, "lockouts": 1}
    # a new shell (the board reset) still refuses, even with good credentials
    sh2 = Shell(d, DK, lambda: b.now, b.ops, b.write, ticks=lambda: b.ms)
    out = _login(b, sh2, "tom")
    assert "login refused: account locked" in out
    # an admin can unlock it
    assert "welcome ada" in _login(b, sh2, "ada")
    sh2.feed(b"unlock tom\rlogout\r")
    b.take()
    b.now += 30
    assert "welcome tom" in _login(b, sh2, "tom")


def test_every_role_against_every_command():
    for name in PW:
        d, b, sh = _setup()
        assert "welcome" in _login(b, sh, name)
        for cmd in sorted(commands.COMMANDS):
            if cmd in ("logout",):
                continue
            args = {"maint-window": " 30", "unlock": " vera", "user-remove": " vera"}.get(cmd, "")
            b.calls = []
            sh.feed((cmd + args + "\r").encode())
            if cmd == "clear-queue" and commands.allowed(ROLE[name], cmd):
                assert "type CLEAR to confirm" in b.take()
                sh.feed(b"CLEAR\r")
            out = b.take()
            allowed = commands.allowed(ROLE[name], cmd)
            assert ("denied" in out) != allowed, (name, cmd, out)
            if not allowed:
                assert b.calls == []
        assert commands.allowed("admin", "clear-queue") and not commands.allowed("technician", "clear-queue")
        assert not commands.allowed("viewer", "selftest") and commands.allowed("technician", "selftest")


def test_clock_unset_refuses_totp_with_a_clear_message():
    d, b, sh = _setup()
    b.now = 1000
    out = _login(b, sh, "tom", code="123456")
    assert "board clock unset" in out and sh.stage == "user"


def test_unknown_user_gets_the_same_answer():
    d, b, sh = _setup()
    assert "login incorrect" in _login(b, sh, "mallory", pw="x", code="123456")


def test_idle_timeout_and_ctrl_d_logout():
    d, b, sh = _setup()
    _login(b, sh, "vera")
    b.ms += 60001
    sh.poll()
    assert "idle timeout" in b.take() and sh.stage == "user"
    b.now += 30
    _login(b, sh, "vera")
    sh.feed(b"\x04")
    assert "logged out" in b.take() and sh.user is None


def test_fuzzed_line_editor_never_logs_in_nor_crashes():
    d, b, sh = _setup()
    seed = 12345
    for i in range(400):
        n = 1 + (seed % 300)
        buf = bytearray(n)
        for j in range(n):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            buf[j] = (seed >> 16) & 0xFF
        sh.feed(bytes(buf))
        assert "welcome" not in b.take()
        assert sh.stage != "shell"
        assert len(sh.line) <= 128
    sh.feed(b"A" * 5000 + b"\r")
    assert "line too long" in b.take()
    # an overlong line dropped with Ctrl-C leaves a clean editor behind
    sh.feed(b"B" * 300 + b"\x03")
    b.take()
    b.now += 100
    assert "welcome tom" in _login(b, sh, "tom")


def test_every_action_and_every_denial_goes_to_the_event_log():
    from agent.security import events

    got = []
    devtest.reset_events()
    events.set_sink(lambda kind, severity, detail: got.append((kind, severity, detail)))
    try:
        d, b, sh = _setup()
        _login(b, sh, "tom")
        sh.feed(b"maint-window 30\rversion\rusers\rwhoami\r")
        b.take()
    finally:
        events.set_sink(None)
        devtest.reset_events()
    acts = [(k, det.get("cmd"), det.get("arg")) for k, s, det in got if k.startswith("console_")]
    assert acts == [("console_login_ok", None, None), ("console_action", "maint-window", "30"),
                    ("console_action", "version", ""), ("console_denied", "users", None)], acts
    assert all(det.get("user") == "tom" for k, s, det in got if k in ("console_action", "console_denied"))


def test_quarantine_refuses_login_until_a_signed_unlock_window_opens():
    from agent.security import flags

    d, b, sh = _setup()
    flags.set_quarantine(d, True)
    out = _login(b, sh, "ada")
    assert "login refused: device quarantined" in out and "welcome" not in out
    flags.set_console_unlock(d, NOW + 600)   # what unlock-console 10 does
    b.now += 30                              # a fresh TOTP step
    assert "welcome ada" in _login(b, sh, "ada")
    sh.feed(b"logout\r")
    b.take()
    b.now = NOW + 630                        # the window has closed
    out = _login(b, sh, "ada")
    assert "login refused: device quarantined" in out, out
    flags.set_quarantine(d, False)
    b.now += 30
    assert "welcome ada" in _login(b, sh, "ada")
