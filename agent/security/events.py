# Security events (contract 1; s12-monitor owns the full module). emit()
# records an event; until the agent wires a sink with set_sink(fn) the events
# wait in a bounded pending list (the oldest dropped and counted).
KINDS = ("boot", "update_step", "rollback", "tuf_failure", "tls_failure", "command_accepted",
         "command_refused", "console_login_ok", "console_login_failed", "console_lockout",
         "integrity_violation", "egress_blocked", "clock_jump", "queue_drop")
SEVERITIES = ("info", "warning", "critical")
MAX_PENDING = 32

_sink = None
_pending = []
dropped = 0


def set_sink(fn):
    global _sink
    _sink = fn
    while _pending and fn is not None:
        kind, severity, detail = _pending.pop(0)
        fn(kind, severity, detail)


def emit(kind, severity="info", detail=None):
    global dropped
    if kind not in KINDS:
        raise ValueError("unknown event kind %r" % kind)
    if severity not in SEVERITIES:
        raise ValueError("unknown severity %r" % severity)
    if _sink is not None:
        _sink(kind, severity, detail)
        return
    if len(_pending) >= MAX_PENDING:
        _pending.pop(0)
        dropped += 1
    _pending.append((kind, severity, detail))


def pending():
    return list(_pending)
