# Security events: the one call every device module makes when something
# security-relevant happens (contract in the round-2 brief, section 1):
#
#   from agent.security import events
#   events.emit("tuf_failure", "warning", {"reason": "bad signature"})
#
# Before the agent wires a sink (set_sink, done by agent/security/monitor.py
# once the flash event log is open) events wait in a bounded pending list;
# what does not fit is counted in `dropped` and reported in posture.
# The sink is fn(kind, severity, detail). A sink that fails (flash full,
# bad detail) never breaks the caller: the failure is counted.

# Kinds: boot, update_step, rollback, tuf_failure, tls_failure,
# command_accepted, command_refused, console_login_ok, console_login_failed,
# console_lockout, console_action, console_denied, console_account,
# console_unlock_token, integrity_violation,
# egress_blocked, clock_jump, queue_drop.
# Resident on the board (heap): kept to the few lines every caller needs.
SEVERITIES = ("info", "warning", "critical")
MAX_PENDING = 16
MAX_KIND = 24

_sink = None
_pending = []
stats = {"emitted": 0, "dropped": 0, "sink_errors": 0}


def emit(kind, severity="info", detail=None):
    # Record one security event; never raises for a bad sink or argument.
    if not isinstance(kind, str) or not kind:
        kind = "unknown"
    kind = kind[:MAX_KIND]
    if severity not in SEVERITIES:
        # An unknown severity is treated as the worse one (fail closed).
        severity = "warning"
    if detail is not None and not isinstance(detail, dict):
        detail = {"value": str(detail)}
    stats["emitted"] += 1
    if _sink is None:
        if len(_pending) >= MAX_PENDING:
            stats["dropped"] += 1
            return False
        _pending.append((kind, severity, detail))
        return True
    return _deliver(kind, severity, detail)


def _deliver(kind, severity, detail):
    try:
        _sink(kind, severity, detail)
        return True
    except (OSError, ValueError, TypeError, MemoryError):
        stats["sink_errors"] += 1
        return False


def set_sink(fn):
    # Wire the sink (None unwires it) and hand it what was pending.
    global _sink
    _sink = fn
    if fn is None:
        return
    while _pending:
        kind, severity, detail = _pending.pop(0)
        _deliver(kind, severity, detail)


def pending():
    return len(_pending)
