# The resident part of the signed commands (heap budget ~8 KiB with the
# board's network guard): a bounded inbox of envelopes, the counts, and the
# command policy hook of the TUF refresh. The verifier (commands.py,
# updater.crypto) and the runner (commands_run.py) are imported when a
# command waits, on the agent's housekeeping turn, and released right after
# (agent.release_modules): between commands their code is off the
# heap, and the policy and the counters are read from /state on each use.
#
# receive(payload)  sender.on_command: keeps at most MAX_WAITING envelopes of
#                   at most commands.MAX_ENVELOPE bytes (bigger ones are kept
#                   as their length only and refused as oversized).
# fetch_policy(up)  UpdateAgent.target_hooks: downloads the model's policy
#                   target (TUF-verified) to /state when its hash changed;
#                   it is parsed and put in force on the next turn, after the
#                   TUF client's code is released.
# tick()            housekeeping: runs what waits, then releases the code.
# release_new()     gives back the code a command turn imported.
import sys

from updater.install import gate

# Loaded per use, released after (only when this turn imported them: code
# someone else holds, e.g. the console's flags, stays).
TRANSIENT = ("agent.security.commands", "agent.security.commands_run", "agent.security.flags", "updater.crypto",
             "agent.console.remote", "agent.console.auth", "agent.keystore")


def release_new(before):
    from agent import release_modules

    names = []
    for n in sys.modules:
        if n not in before:
            for p in TRANSIENT:
                if n == p or n.startswith(p + "."):
                    names.append(n)
    release_modules(names)


MAX_ENVELOPE = 1024  # = commands.MAX_ENVELOPE (not imported: that module is not resident)
MAX_WAITING = 4
MAX_POLICY = 16384
RETRIES = 3  # turns for a command whose verification ran out of memory
POLICY_FILE = "command-policy.json"
NEW_POLICY = "command-policy.new"


class CommandInbox:
    def __init__(self, agent, core_endpoints):
        self.agent = agent
        self.core = core_endpoints  # broker + update server (quarantine)
        self.state = agent.board.mounts()["state"]
        self.model = agent.updates.model
        self.waiting = []  # envelopes (bytes) or ints (length of an oversized one)
        self.accepted = 0
        self.refused = 0
        self.policy_version = None
        self.policy_error = None
        self.policy_sha = None  # TUF sha256 of the policy on flash, once compared
        self.policy_new = True  # learn the version on the first turn
        self.retry = None  # [envelope, attempts] (CommandRunner's retry state)
        self.reboot_pending = None
        self.short = 0  # turns that ran out of memory

    def receive(self, payload):
        if len(self.waiting) >= MAX_WAITING:
            self.refused += 1
            self._send({"result": "refused", "reason": "busy: %d commands wait" % MAX_WAITING})
            return
        self.waiting.append(len(payload) if len(payload) > MAX_ENVELOPE else bytes(payload))

    def _send(self, r):
        # A refusal decided here (no runner loaded): result record + event.
        from agent.security import events

        events.emit("command_refused", "warning", {"reason": r["reason"][:40]})
        tel = self.agent.tel
        if tel is not None:
            tel.sender.enqueue_status("command", command=r)

    def fetch_policy(self, up):
        # Runs inside the TUF check: only a download to flash, no parsing.
        from updater.tuf.errors import DownloadError, RepositoryError

        try:
            info = up.get_targetinfo(self.model + "/" + POLICY_FILE)
            if info is None:
                return
            digest = info.hashes.get("sha256")
            if digest is None or digest == self.policy_sha:
                return
            if info.length > MAX_POLICY:
                self.policy_error = "policy of %d bytes > %d" % (info.length, MAX_POLICY)
                return
            # (the installer's hash_file: resident already beside the update agent;
            # None when the file cannot be read)
            from updater.install.slot import hash_file

            if hash_file(self.state + "/" + POLICY_FILE, bytearray(512))[0] != digest:
                up.download_target(info, self.state + "/" + NEW_POLICY)
                self.policy_new = True
            self.policy_sha = digest
        except (RepositoryError, DownloadError, OSError) as e:
            self.policy_error = str(e)[:80]

    def tick(self):
        if self.reboot_pending is not None:
            self._reboot()
        if not self.waiting and not self.policy_new:
            return
        if not self.waiting and self._connecting():
            return  # the policy can wait for the TLS handshake's peak to pass
        try:
            before = list(sys.modules)
            try:
                self._turn()
            finally:
                release_new(before)
        except MemoryError:
            # Not the sender's fault: the next turns try again, then refuse.
            self._out_of_memory()

    def _connecting(self):
        tel = self.agent.tel
        if tel is None:
            return False
        c = tel.sup.client if tel.sup is not None else None
        return c is None or not c.connected

    def _turn(self):
        from agent.security.commands_run import AgentCommands

        ac = AgentCommands(self.agent, self)
        r = ac.runner
        if self.policy_new:
            r.install_pending(self.state + "/" + NEW_POLICY)
            self.policy_new = False
        self.policy_version = r.policy.version if r.policy is not None else None
        self.policy_error = r.policy_error
        while self.waiting:
            env = self.waiting[0]
            r._retry = self.retry
            res = r.oversized(env) if isinstance(env, int) else r.handle(env)
            self.retry = r._retry
            if res is None:
                return  # out of memory: kept for the next turn
            self.waiting.pop(0)
            if res["result"] == "done":
                self.accepted += 1
            else:
                self.refused += 1

    def _out_of_memory(self):
        import gc

        gc.collect()
        self.short += 1
        if not self.waiting:
            return
        n = self.retry[1] + 1 if self.retry is not None else 1
        self.retry = [self.waiting[0], n]
        if n >= RETRIES:
            self.waiting.pop(0)
            self.retry = None
            self.refused += 1
            self._send({"result": "refused", "reason": "out of memory"})

    def _reboot(self):
        # A reboot accepted on an earlier turn (its result is in the flash
        # queue; published after the reboot at the latest), through the gate.
        b = self.agent.board
        self.reboot_pending = None
        if gate.check(b.read_pump(), b.time(), None, True) is None:
            if self.agent.tel is not None:
                self.agent.tel.sender.queue.sync()
            b.reset("command: reboot")

    def stats_map(self):
        s = {"accepted": self.accepted, "refused": self.refused, "policy": self.policy_version}
        if self.policy_error:
            s["policy_error"] = self.policy_error[:60]
        if self.short:
            s["out_of_memory"] = self.short
        return s
