# The agent's side of signed commands and of the egress allow-list: arms the
# board's network guard from the device configuration, and builds the
# CommandRunner with the actions the agent can take (main.py wires it).
#
# Allow-list (board/netguard.py): the broker (identity host:port), the update
# server (config update.metadata_url / targets_url) and config
# "egress": {"allow": ["host:port", ...]} extras. Quarantine narrows it to the
# broker and the update server.
from board import netguard
from agent.security import flags
from agent.security.commands_run import CommandRunner
from updater.install import gate


def _url_endpoint(url):
    # "https://host:port/path" -> "host:port" (default ports 80/443).
    if not isinstance(url, str) or "://" not in url:
        return None
    scheme, rest = url.split("://", 1)
    hostport = rest.split("/", 1)[0]
    if hostport.startswith("["):
        return None
    if ":" in hostport:
        return hostport
    return "%s:%d" % (hostport, 443 if scheme == "https" else 80)


def core_endpoints(ident, cfg):
    eps = []
    if ident is not None:
        eps.append("%s:%d" % (ident["host"], ident["port"]))
    up = cfg.get("update") or {}
    for k in ("metadata_url", "targets_url"):
        e = _url_endpoint(up.get(k))
        if e is not None and e not in eps:
            eps.append(e)
    return eps


def arm_egress(ident, cfg, state_dir):
    core = core_endpoints(ident, cfg)
    extra = []
    eg = cfg.get("egress")
    if isinstance(eg, dict) and isinstance(eg.get("allow"), list):
        extra = [e for e in eg["allow"] if isinstance(e, str)]
    netguard.arm(core + extra)
    if flags.load(state_dir)["quarantine"]:
        netguard.narrow(core)
    return core


class AgentCommands:
    # The actions of the signed commands on a running agent.
    def __init__(self, agent, core_endpoints):
        self.agent = agent
        self.core = core_endpoints
        self.state = agent.board.mounts()["state"]
        self.reboot_pending = None
        tel = agent.tel
        model = agent.updates.model if agent.updates is not None else "unknown"
        send = None
        if tel is not None:
            send = lambda r: tel.sender.enqueue_status("command", command=r)  # noqa: E731
        self.runner = CommandRunner(self.state, agent.ident["device_id"], model, agent.board.time, send)
        a = self.runner.actions
        a["report-now"] = self.report_now
        a["check-update"] = self.check_update
        a["set-telemetry-period"] = self.set_period
        a["quarantine"] = self.quarantine
        a["reboot"] = self.reboot
        a["unlock-console"] = self.unlock_console

    def report_now(self, args):
        ag = self.agent
        ag.report()
        if ag.tel is not None:
            ag.tel.sender.enqueue_status("online")
        hook = getattr(ag, "report_posture", None)  # the posture module, when present
        if hook is not None:
            hook()

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
        on = args[0] == "on"
        flags.set_quarantine(self.state, on)
        netguard.narrow(self.core if on else None)

    def reboot(self, args):
        b = self.agent.board
        why = gate.check(b.read_pump(), b.time(), None, True)
        if why:
            return "clinical gate: " + why
        # After the result record is queued: the next housekeeping turn.
        self.reboot_pending = "command"

    def unlock_console(self, args):
        flags.set_console_unlock(self.state, int(self.agent.board.time()) + args[0] * 60)

    def tick(self):
        # Housekeeping: a reboot accepted on the last turn (its result is in
        # the flash queue; it is published after the reboot at the latest).
        if self.reboot_pending is not None:
            b = self.agent.board
            if gate.check(b.read_pump(), b.time(), None, True) is None:
                if self.agent.tel is not None:
                    self.agent.tel.sender.queue.sync()
                b.reset("command: reboot")
            self.reboot_pending = None
