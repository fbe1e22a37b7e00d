# The part of the security agent a provisioned board runs before its first
# socket, before the telemetry objects: the egress allow-list armed from the
# configuration, and the guard's report of a blocked connection (resident:
# the guard holds it). Kept small and importing nothing else at load: what
# loads before the telemetry objects must leave the TLS handshake contiguous
# heap on a 256 KiB board (the inbox's code, or even events.py, loaded here
# made the MQTT client's first allocation fail and the watchdog reset the
# board, tests/e2e/test_telemetry_board_stream.py).
import sys


def _egress_blocked(endpoint):
    # The network guard's on_block (board/netguard.py never imports the agent).
    from agent.security import events

    events.emit("egress_blocked", "warning", {"endpoint": endpoint[:64]})


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
