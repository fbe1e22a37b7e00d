# The login console on a provisioned board's UART: a small line editor and
# a session (login: / password / TOTP code / commands). Bytes come in
# through feed() from the agent loop; nothing typed is ever executed as code.
#
# Login: quarantine (agent/security/flags.py) refuses it unless a signed
# unlock window is open; locked or delayed accounts are refused before any
# check; the attempt is committed to flash as a failure before the
# credentials are checked (agent/console/lockout.py). Passwords and codes
# are never echoed and never written anywhere.
import gc
import json

from board.compat import ticks_ms, ticks_diff
from agent.console import auth as acc
from agent.console import lockout

MAX_LINE = 128
MAX_TOKEN_LINE = 160  # the unlock token (agent/console/remote.py): 145 characters
# Commands and the least role each needs. No command reads a key or runs code:
# each one calls an operation the agent hands in (ops[name]).
RANK = {"viewer": 0, "technician": 1, "admin": 2}
# command -> (least role, usage)
COMMANDS = {
    "help": ("viewer", "help"),
    "whoami": ("viewer", "whoami"),
    "logout": ("viewer", "logout"),
    "status": ("viewer", "status"),
    "version": ("viewer", "version"),
    "posture": ("viewer", "posture"),
    "events": ("viewer", "events"),
    "selftest": ("technician", "selftest"),
    "check-updates": ("technician", "check-updates"),
    "maint-window": ("technician", "maint-window MINUTES"),
    "export-logs": ("technician", "export-logs"),
    "users": ("admin", "users"),
    "unlock": ("admin", "unlock USER"),
    "user-remove": ("admin", "user-remove USER"),
    "clear-queue": ("admin", "clear-queue CONFIRM"),
}


def allowed(role, command):
    need = COMMANDS.get(command)
    return need is not None and RANK.get(role, -1) >= RANK[need[0]]


def usable(role):
    return [c for c in sorted(COMMANDS) if allowed(role, c)]

IDLE_MS = 300000
EVENTS_SHOWN = 10  # `events` / `export-logs`: the newest entries of the log
PROMPT_LOGIN = b"login: "
# The answer to a raw-REPL request; host tools fail on "console locked".
LOCKED_LINE = b"console locked: provisioned board, no code runs here; log in with `medsentry console`\r\n"


def _emit(kind, severity, detail):
    try:
        from agent.security import events
    except ImportError:
        return
    events.emit(kind, severity, detail)


def _quarantined(state_dir, now):
    try:
        from agent.security import flags
    except ImportError:
        return False
    f = flags.load(state_dir)
    return bool(f.get("quarantine")) and not f.get("console_unlock_until", 0) > now


class Shell:
    def __init__(self, state_dir, device_key, clock, ops, write, idle_ms=IDLE_MS, ticks=ticks_ms, device=None,
                 entropy=None):
        self.state_dir = state_dir
        self.device = device  # (device id, model): for unlock tokens; None: none accepted
        self.entropy = entropy  # fn(n) -> n random bytes for challenges (None: os.urandom)
        self.device_key = device_key
        self.clock = clock  # board RTC seconds (board.time)
        self.ops = ops
        self.out = write
        self.idle_ms = idle_ms
        self.ticks = ticks
        self.line = bytearray()
        self.overflow = False
        self.last_cr = False
        self.user = None
        self.role = None
        self.pending = None  # (name, password) while the code is asked
        self.challenge = None  # the unlock challenge shown (RAM only, one attempt)
        self.stage = "user"
        self.confirm = None
        self.last = ticks()
        self.counts = {"ok": 0, "failed": 0, "lockouts": 0}

    # -- line editor ---------------------------------------------------------
    def start(self):
        self.out(b"\r\nmedsentry maintenance console\r\n" + PROMPT_LOGIN)

    def _echo(self):
        return self.stage in ("user", "shell")

    def feed(self, data):
        for c in data:
            self._byte(c)

    def _byte(self, c):
        self.last = self.ticks()
        if c == 10 and self.last_cr:
            self.last_cr = False
            return
        self.last_cr = c == 13
        if c in (10, 13):
            self.out(b"\r\n")
            line, over = bytes(self.line), self.overflow
            self.line = bytearray()
            self.overflow = False
            if over:
                self._say("error: line too long")
                self._reset_login()
                return self._prompt()
            return self._enter(line.decode())
        if c in (8, 127):
            if self.line:
                self.line = self.line[:-1]
                if self._echo():
                    self.out(b"\x08 \x08")
            return
        if c == 3:  # Ctrl-C drops the line (and a login in progress)
            self.line = bytearray()
            self.overflow = False
            self.out(b"^C\r\n")
            self._reset_login()
            return self._prompt()
        if c == 1:  # Ctrl-A: a tool asking for the raw REPL (mpremote, provisioning)
            self.line = bytearray()
            self.overflow = False
            self.out(b"\r\n" + LOCKED_LINE)
            self._reset_login()
            return self._prompt()
        if c == 4 and not self.line and self.stage == "shell":
            self.out(b"\r\n")
            return self._logout("logout")
        if 32 <= c < 127:
            if len(self.line) >= (MAX_TOKEN_LINE if self.stage == "token" else MAX_LINE):
                self.overflow = True
                return
            self.line.append(c)
            if self._echo():
                self.out(bytes([c]))
        # any other control byte or non-ASCII byte is ignored

    def poll(self):
        # Called by the agent loop: the idle timeout ends a session.
        if self.stage != "user" or self.line:
            if ticks_diff(self.ticks(), self.last) > self.idle_ms:
                self.out(b"\r\nidle timeout\r\n")
                self.line = bytearray()
                if self.stage == "shell":
                    return self._logout("idle timeout")
                self._reset_login()
                self._prompt()

    def _say(self, text):
        self.out(text.encode() + b"\r\n")

    def _prompt(self):
        if self.stage == "user":
            self.out(PROMPT_LOGIN)
        elif self.stage == "password":
            self.out(b"password: ")
        elif self.stage == "code":
            self.out(b"TOTP code: ")
        elif self.stage == "token":
            self.out(b"unlock token: ")
        elif self.confirm:
            self.out(b"type CLEAR to confirm: ")
        else:
            self.out(self.user.encode() + b"@medsentry$ ")

    def _reset_login(self):
        if self.stage != "shell":
            self.stage = "user"
            self.pending = None
            self.challenge = None
        self.confirm = None

    # -- login ---------------------------------------------------------------
    def _enter(self, text):
        if self.stage == "user":
            if text.strip():
                self.pending = (text.strip(), None)
                self.stage = "password"
        elif self.stage == "password":
            self.pending = (self.pending[0], text)
            self.stage = "code"
            if self.device is not None and int(self.clock()) < acc.CLOCK_MIN:
                self._remote("ask_token")
        elif self.stage in ("code", "token"):
            # the code, or the unlock token for the challenge shown (consumed
            # before any check; only the token stage has one)
            name, pw = self.pending
            challenge, self.challenge = self.challenge, None
            self.pending = None
            self.stage = "user"
            self._login(name, pw, text, challenge)
        else:
            self._command(text)
        self._prompt()

    def abort(self, message):
        # An operation failed (out of memory, flash error): say so, drop any
        # login in progress; a session stays open.
        self.line = bytearray()
        self.pending = None
        self.challenge = None
        if self.stage != "shell":
            self.stage = "user"
        self.confirm = None
        self._say(message)
        self._prompt()

    def _remote(self, fn, *args):
        # A function of agent/console/remote.py (one-time unlock tokens: the
        # board clock is unset); its code is released at once after.
        import sys

        before = list(sys.modules)
        try:
            from agent.console import remote

            return getattr(remote, fn)(self, *args)
        finally:
            remote = None
            from agent import release_modules

            release_modules([m for m in sys.modules if m not in before and m != "agent.security.events"])

    def _login(self, name, password, answer, challenge=None):
        # answer: the TOTP code, or with a challenge the unlock token for it.
        gc.collect()
        now = int(self.clock())
        # A valid unlock token is itself a signed unlock for this one login.
        if challenge is None and _quarantined(self.state_dir, now):
            return self._say("login refused: device quarantined (needs a signed unlock-console)")
        try:
            users = acc.load(self.state_dir)
            lock = lockout.Lockout(self.state_dir + "/console/lockout.json", now)
        except (acc.AccountError, lockout.CountersCorrupt) as e:
            return self._say("login disabled: %s" % e)
        key = name if name in users else lockout.ANY
        who = name if name in users else "?"
        refused = lock.check(key, now)
        if refused is not None:
            return self._say("login refused: account %s, retry in %d s" % (
                "locked" if refused[0] == "locked" else "delayed", refused[1]))
        if challenge is None and now < acc.CLOCK_MIN:
            return self._say("login refused: board clock unset, TOTP cannot be checked")
        lock.begin(key, now)  # committed before the answer
        why = None
        if challenge is None:
            ok, step = acc.check(users, self.device_key, name, password, answer, now, lock.last_step(key))
        else:
            ok, why = self._remote("token_login", users, name, password, challenge, answer)
            step = lock.last_step(key)
        if ok:
            lock.succeeded(key, step)
            self.counts["ok"] += 1
            _emit("console_login_ok", "info", {"user": who})
            self.user = name
            self.role = users[name]["role"]
            self.stage = "shell"
            return self._say("welcome %s (%s)" % (name, self.role))
        self.counts["failed"] += 1
        _emit("console_login_failed", "warning", {"user": who})
        if lock.failed(key, now):
            self.counts["lockouts"] += 1
            _emit("console_lockout", "critical", {"user": who, "seconds": lockout.LOCK_S})
            return self._say("login incorrect: account locked for %d s" % lockout.LOCK_S)
        self._say("login incorrect" + (" (unlock token refused: %s)" % why if why else ""))

    def _logout(self, why):
        self._say("%s: %s logged out" % (why, self.user))
        self.user = self.role = self.confirm = None
        self.stage = "user"
        self._prompt()

    # -- commands ------------------------------------------------------------
    def _command(self, text):
        # The account as it is now: removed or changed meanwhile (a signed
        # console-user command), that holds from this command on.
        try:
            u = acc.load(self.state_dir).get(self.user)
        except acc.AccountError:
            u = None  # unreadable: fail closed
        if u is None:
            self._say("account %s removed: logged out" % self.user)
            self.user = self.role = self.confirm = None
            self.stage = "user"
            return
        self.role = u["role"]
        if self.confirm is not None:
            op, self.confirm = self.confirm, None
            if text.strip() != "CLEAR":
                return self._say("cancelled")
            return self._run(op, [])
        words = text.split()
        if not words:
            return
        name, args = words[0], words[1:]
        if name not in COMMANDS:
            return self._say("error: unknown command %s (try help)" % name)
        if not allowed(self.role, name):
            _emit("console_denied", "warning", {"user": self.user, "cmd": name})
            return self._say("denied: %s may not run %s" % (self.role, name))
        if name not in ("help", "whoami", "logout"):
            # Every action to the event log: who, what, and the argument of
            # the admin/technician commands that take one (a user, minutes).
            _emit("console_action", "info", {"user": self.user, "cmd": name, "arg": args[0][:32] if args else ""})
        if name == "help":
            return self._say(" ".join(usable(self.role)))
        if name == "whoami":
            return self._say("%s (%s)" % (self.user, self.role))
        if name == "logout":
            self.stage = "user"
            self._say("logged out")
            self.user = self.role = None
            return
        if name == "clear-queue":
            self.confirm = "clear-queue"
            return
        if name in ("unlock", "user-remove", "maint-window") and len(args) != 1:
            return self._say("usage: " + COMMANDS[name][1])
        if name == "unlock":
            return self._unlock(args[0])
        if name == "user-remove":
            return self._remove(args[0])
        if name == "users":
            users = acc.load(self.state_dir)
            return self._say(json.dumps(dict((n, users[n]["role"]) for n in users)))
        self._run(name, args)

    def _run(self, name, args):
        op = self.ops.get(name)
        if op is None:
            return self._say("error: %s not available on this board" % name)
        try:
            res = op(*args)
            text = json.dumps(res)
        except (ValueError, OSError) as e:
            return self._say("error: %s" % e)
        except (TypeError, KeyError, IndexError, AttributeError) as e:
            # A fault in an operation ends this command, never the agent.
            return self._say("error: %s failed (%s)" % (name, e.__class__.__name__))
        self._say(text)

    def _unlock(self, name):
        lock = lockout.Lockout(self.state_dir + "/console/lockout.json", int(self.clock()))
        lock.unlock(name)
        self._say("unlocked %s" % name)

    def _remove(self, name):
        users = acc.load(self.state_dir)
        if name not in users or name == self.user:
            return self._say("error: cannot remove %s" % name)
        del users[name]
        acc.save(self.state_dir, users)
        self._say("removed %s" % name)


# -- the agent's side ------------------------------------------------------
# The operations the commands call are the agent's own (AgentOps); the UART
# side is agent/main.py ConsolePort.



class AgentOps:
    # What console commands may do: read status, ask for a self-test or an
    # update check, record a maintenance window, clear the telemetry queue.
    def __init__(self, agent):
        self.a = agent

    def table(self):
        return {
            "status": self.status, "version": self.version, "posture": self.posture,
            "events": self.events, "selftest": self.selftest,
            "check-updates": self.check_updates, "maint-window": self.maint_window,
            "export-logs": self.events, "clear-queue": self.clear_queue,
        }

    def version(self):
        u = self.a.updates
        return {"version": u.version, "model": u.model, "slot": self.a.slot}

    def status(self):
        st = self.a.status()
        keep = ("state", "slot", "version", "model", "reset_reason", "uptime_s", "heap_free", "pump", "recalled")
        return dict((k, st.get(k)) for k in keep)

    def posture(self):
        from agent.console import stats

        return {"console": stats.stats(self.a.board.mounts()["state"])}

    def events(self):
        # The newest entries of the flash event log, decoded, and how many
        # events wait for a log (the monitor is off or not started yet).
        try:
            from agent.security import events, logread
        except ImportError:
            return {"entries": [], "pending": 0}
        mon = self.a.monitor
        out = []
        try:
            if mon is not None:
                log = mon.log
            else:
                import os

                path = self.a.board.mounts()["data"] + "/events"
                os.stat(path)  # OSError: no log on this board (nothing to read)
                log = logread.load(path)
            for n, e in logread.entries(log, log.head_n - EVENTS_SHOWN):
                d = logread.decode_entry(e)
                out.append({"n": d[0], "t": d[1], "kind": d[2], "severity": d[3], "detail": d[4]})
        except OSError:
            pass
        finally:
            if mon is None:  # resident only beside the monitor
                from agent import release_modules

                release_modules(("agent.security.logread",))
        return {"entries": out, "pending": events.pending()}

    def selftest(self):
        from agent import selftest

        return {"failures": selftest.run(self.a.board)}

    def check_updates(self):
        self.a.updates.next_check = 0
        return {"update_check": "at the next tick"}

    def maint_window(self, minutes):
        m = int(minutes)
        if not 0 <= m <= 24 * 60:
            raise ValueError("minutes must be 0..1440")
        until = int(self.a.board.time()) + 60 * m
        from board.compat import write_atomic

        write_atomic(self.a.board.mounts()["state"] + "/console/maint.json", json.dumps({"until": until}))
        return {"maintenance_until": until}

    def clear_queue(self):
        tel = self.a.tel
        if tel is None or not hasattr(tel, "clear_queue"):
            raise ValueError("no telemetry queue on this board")
        return {"cleared": tel.clear_queue()}
