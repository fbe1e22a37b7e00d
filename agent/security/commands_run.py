# Runs signed commands on the device (verification: commands.py).
#
# handle(payload) for every message on medsentry/<id>/cmd: verify against
# the command policy (a TUF target, stored in /state/command-policy.json once
# the TUF client accepted it), persist the issuer's counter (BEFORE running:
# a power cut after this never lets the same command run twice), run the
# action, and report: a sealed result record (send_result) and a security
# event (command_accepted / command_refused). Never raises on bad input.
#
# Counters: /state/cmdctr.json {"ctr": {keyid: last}, "floor_iat": t}. A
# corrupt counter file fails closed without locking operators out: the
# counters restart empty but only commands issued after the corruption was
# found (iat >= floor_iat, the board time then) are accepted, so no command
# issued before it can be replayed; reported as integrity_violation.
#
# Not resident: commands_inbox.py imports this module (and through it the
# verifier) on the housekeeping turn a command waits, and releases it after.
# AgentCommands: the actions of a running agent, built per turn.
import json

from board import netguard
from board.compat import write_atomic
from agent.security import commands as C
from updater.install import gate

POLICY_FILE = "command-policy.json"
COUNTER_FILE = "cmdctr.json"
MAX_ISSUERS = 32
RETRIES = 3  # attempts for a command whose verification ran out of memory


def _events():
    try:
        from agent.security import events
    except ImportError:
        return None
    return events


def _emit(kind, severity, detail):
    ev = _events()
    if ev is not None:
        ev.emit(kind, severity, detail)


class CommandRunner:
    def __init__(self, state_dir, device_id, model, clock, send_result=None):
        self.state = state_dir
        self.device_id = device_id
        self.model = model
        self.clock = clock  # -> board epoch seconds
        self.send_result = send_result  # fn(result map): sealed record
        self.actions = {}  # command -> fn(args) -> None (done) or refusal reason
        self.policy = None
        self.policy_error = None
        self.stats = {"accepted": 0, "refused": 0, "failed": 0}
        self._retry = None  # [payload, attempts] of a command that ran out of memory
        self.last = None
        self._load_policy()
        self._load_counters()

    # -- policy -----------------------------------------------------------------
    def _load_policy(self):
        try:
            with open(self.state + "/" + POLICY_FILE, "rb") as f:
                data = f.read()
        except OSError:
            return
        try:
            self.policy = C.load_policy(data, self.model)
        except C.PolicyError as e:
            self.policy_error = str(e)
            _emit("integrity_violation", "warning", {"file": POLICY_FILE, "reason": str(e)[:60]})

    def install_policy(self, data):
        # Bytes of the policy target the TUF client verified. Returns True
        # when it is new and now in force; PolicyError when malformed or older.
        p = C.load_policy(data, self.model)
        if self.policy is not None:
            if p.version < self.policy.version:
                raise C.PolicyError("policy version %d is older than %d" % (p.version, self.policy.version))
            if p.version == self.policy.version:
                return False
        write_atomic(self.state + "/" + POLICY_FILE, bytes(data))
        self.policy = p
        self.policy_error = None
        return True

    def install_pending(self, path):
        # A policy the TUF client downloaded and verified (commands_inbox
        # fetch_policy) is checked and put in force; the file goes either way.
        import os

        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return False
        try:
            return self.install_policy(data)
        except C.PolicyError as e:
            self.policy_error = str(e)[:80]
            return False
        finally:
            data = None
            try:
                os.remove(path)
            except OSError:
                pass

    # -- counters ---------------------------------------------------------------
    def _load_counters(self):
        self.counters = {}
        self.floor_iat = 0
        try:
            with open(self.state + "/" + COUNTER_FILE) as f:
                text = f.read()
        except OSError:
            return
        try:
            d = json.loads(text)
            ctr = d["ctr"]
            floor = d.get("floor_iat", 0)
            if not isinstance(ctr, dict) or not isinstance(floor, int):
                raise ValueError("bad types")
            for k in ctr:
                if not isinstance(ctr[k], int):
                    raise ValueError("bad counter")
        except (ValueError, KeyError, TypeError):
            self.floor_iat = int(self.clock())
            _emit("integrity_violation", "warning", {"file": COUNTER_FILE, "reason": "corrupt"})
            self._save_counters()
            return
        self.counters = ctr
        self.floor_iat = floor

    def _save_counters(self):
        if len(self.counters) > MAX_ISSUERS and self.policy is not None:
            # Forget issuers the policy no longer knows (bounded file).
            for k in list(self.counters):
                if k not in self.policy.keys and k not in self.policy.revoked:
                    del self.counters[k]
        write_atomic(self.state + "/" + COUNTER_FILE,
                     json.dumps({"ctr": self.counters, "floor_iat": self.floor_iat}))

    # -- handling ---------------------------------------------------------------
    def retry(self):
        # From the agent's housekeeping: a command that ran out of memory.
        if self._retry is not None:
            return self.handle(self._retry[0])
        return None

    def handle(self, payload):
        # The result map, or None while a command waits for a retry (a
        # MemoryError; a second message meanwhile is refused if it too fails).
        attempts = 0
        if self._retry is not None and self._retry[0] is payload:
            attempts = self._retry[1]
            self._retry = None
        now = int(self.clock())
        try:
            c = C.verify(self.policy, payload, self.device_id, self.model, now, self.counters)
            if c["iat"] < self.floor_iat:
                raise C.CommandRefused(C.REPLAYED, "issued before the counter store was reset", c)
        except C.CommandRefused as e:
            return self._refused(e.reason, str(e), e.cmd)
        except MemoryError:
            # Not the sender's fault: kept (one message at a time) and tried
            # again from retry() after a collection, RETRIES attempts in all.
            import gc

            gc.collect()
            attempts += 1
            if attempts < RETRIES and self._retry is None:
                self._retry = [payload, attempts]
                return None
            return self._refused("out of memory", "out of memory", None)
        # Persist the counter before anything runs.
        self.counters[c["issuer"]] = c["ctr"]
        try:
            self._save_counters()
        except OSError as e:
            del self.counters[c["issuer"]]
            return self._refused("state write failed", "counter store: %s" % e, c)
        fn = self.actions.get(c["cmd"])
        why = "not supported on this device" if fn is None else None
        if fn is not None:
            try:
                why = fn(c["args"])
            except (OSError, ValueError) as e:
                self.stats["failed"] += 1
                why = "failed: %s" % e
        if why:
            return self._refused(why, why, c)
        self.stats["accepted"] += 1
        res = self._result(c, "done", None)
        _emit("command_accepted", "info", {"cmd": c["cmd"], "issuer": c["issuer"][:16], "ctr": c["ctr"]})
        return res

    def oversized(self, n):
        # An envelope the inbox did not keep (only its length n).
        return self._refused(C.OVERSIZED, "%s: %d bytes > %d" % (C.OVERSIZED, n, C.MAX_ENVELOPE), None)

    def _refused(self, reason, detail, c):
        self.stats["refused"] += 1
        res = self._result(c, "refused", detail)
        d = {"reason": reason}
        if c is not None:
            d["cmd"] = str(c.get("cmd"))[:32]
            d["issuer"] = str(c.get("issuer"))[:16]
        _emit("command_refused", "warning", d)
        return res

    def _result(self, c, result, reason):
        r = {"result": result}
        if c is not None:
            r["cmd"] = str(c.get("cmd"))[:32]
            r["issuer"] = str(c.get("issuer"))[:16]
            if isinstance(c.get("ctr"), int):
                r["ctr"] = c["ctr"]
        if reason:
            r["reason"] = reason[:100]
        self.last = r
        if self.send_result is not None:
            self.send_result(r)
        return r


class AgentCommands:
    # The actions of the signed commands on a running agent; built per turn
    # by commands_inbox.CommandInbox (inbox: core endpoints, reboot_pending).
    def __init__(self, agent, inbox):
        self.agent = agent
        self.inbox = inbox
        self.state = inbox.state
        tel = agent.tel
        send = None
        if tel is not None:
            send = lambda r: tel.sender.enqueue_status("command", command=r)  # noqa: E731
        self.runner = CommandRunner(self.state, agent.ident["device_id"], inbox.model, agent.board.time, send)
        a = self.runner.actions
        a["report-now"] = self.report_now
        a["check-update"] = self.check_update
        a["set-telemetry-period"] = self.set_period
        a["quarantine"] = self.quarantine
        a["reboot"] = self.reboot
        a["unlock-console"] = self.unlock_console
        a["console-user"] = self.console_user

    def report_now(self, args):
        ag = self.agent
        ag.report()
        if ag.tel is not None:
            ag.tel.sender.enqueue_status("online")
        self._posture_soon()

    def _posture_soon(self):
        # A posture report at the monitor's next tick, whatever changed.
        mon = getattr(self.agent, "monitor", None)
        if mon is not None:
            mon.ps["at"] = None

    def check_update(self, args):
        up = self.agent.updates
        if not up.cfg.get("metadata_url"):
            return "no update server configured"
        up.next_check = 0
        up.failures = 0

    def set_period(self, args):
        tel = self.agent.tel
        if tel is None:
            return "telemetry not running"
        tel.period_ms = args[0] * 1000

    def quarantine(self, args):
        from agent.security import flags  # only for the commands that set flags

        on = args[0] == "on"
        flags.set_quarantine(self.state, on)
        netguard.narrow(self.inbox.core if on else None)
        self._posture_soon()  # the posture's quarantine field says so at once

    def reboot(self, args):
        b = self.agent.board
        why = gate.check(b.read_pump(), b.time(), None, True)
        if why:
            return "clinical gate: " + why
        # After the result record is queued: the inbox's next turn.
        self.inbox.reboot_pending = "command"

    def unlock_console(self, args):
        from agent.security import flags

        flags.set_console_unlock(self.state, int(self.agent.board.time()) + args[0] * 60)

    def console_user(self, args):
        # Add or remove a console account (agent/console/remote.py); released
        # after the turn with the rest of the command code (commands_inbox.release_new).
        from agent.console import remote

        b = self.agent.board
        return remote.apply(self.state, b.device_key(), self.agent.ident, args)
