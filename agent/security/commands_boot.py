# The part of the security agent every board starts with, provisioned or not
# (kept small: it stays on the heap): the egress allow-list armed from the
# configuration before the agent's first socket, the guard's report of a
# blocked connection, and release_new(), which gives back the code a command
# turn imported (commands_inbox.py).
import sys

# Loaded per use, released after (only when this turn imported them: code
# someone else holds, e.g. the console's flags, stays).
TRANSIENT = ("agent.security.commands", "agent.security.commands_run", "agent.security.flags", "updater.crypto",
             "agent.console.remote", "agent.console.auth", "agent.keystore")


def _egress_blocked(endpoint):
    # The network guard's on_block (board/netguard.py never imports the agent).
    from agent.security import events

    events.emit("egress_blocked", "warning", {"endpoint": endpoint[:64]})


def release_new(before):
    from agent import release_modules

    names = []
    for n in sys.modules:
        if n not in before:
            for p in TRANSIENT:
                if n == p or n.startswith(p + "."):
                    names.append(n)
    release_modules(names)


def arm_egress(ident, cfg, state_dir):
    # The allow-list from the configuration, before the agent's first socket.
    before = list(sys.modules)
    from agent.security import flags

    try:
        return flags.arm_egress(ident, cfg, state_dir, _egress_blocked)
    finally:
        # Given back by hand: release_modules would import agent.updates
        # here, before the telemetry objects that must come first.
        flags = None
        if "agent.security.flags" not in before:
            # (pop: the import may have come from the package's attribute
            # when another release left it there without the sys.modules entry)
            sys.modules.pop("agent.security.flags", None)
            pkg = sys.modules.get("agent.security")
            if pkg is not None and "flags" in pkg.__dict__:
                delattr(pkg, "flags")
