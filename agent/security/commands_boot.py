# The part of the security agent a provisioned board runs before its first
# socket, before the telemetry objects: the egress allow-list armed from the
# configuration, the guard reporting to events.egress_blocked. The agent
# releases this module right after (agent/main.py): what it loads before the
# telemetry objects must stay small, since the TLS handshake needs contiguous
# heap after them (on a 256 KiB board the inbox's code loaded here made the
# MQTT client's first allocation fail, tests/e2e/test_telemetry_board_stream.py).
import sys


def arm_egress(ident, cfg, state_dir):
    # The allow-list from the configuration, before the agent's first socket.
    before = list(sys.modules)
    from agent.security import events, flags

    try:
        return flags.arm_egress(ident, cfg, state_dir, events.egress_blocked)
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
