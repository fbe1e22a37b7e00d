# Security events (ROUND2 contract 1). emit(kind, severity, detail) records
# an event; until the agent wires a sink with set_sink(fn) the events wait in
# a bounded pending list (what does not fit is counted as dropped).
# s12-monitor owns the full module (tamper-evident log); this is the minimal
# contract with the identical API.
KINDS = ("boot", "update_step", "rollback", "tuf_failure", "tls_failure", "command_accepted",
         "command_refused", "console_login_ok", "console_login_failed", "console_lockout",
         "integrity_violation", "egress_blocked", "clock_jump", "queue_drop")
SEVERITIES = ("info", "warning", "critical")
MAX_PENDING = 16

_sink = [None]
_pending = []
_dropped = [0]


def emit(kind, severity="info", detail=None):
    if severity not in SEVERITIES:
        severity = "warning"
    sink = _sink[0]
    if sink is not None:
        sink(kind, severity, detail)
        return
    if len(_pending) >= MAX_PENDING:
        _dropped[0] += 1
        return
    _pending.append((kind, severity, detail))


def set_sink(fn):
    # Wire the sink; the events that waited go to it first, oldest first.
    _sink[0] = fn
    if fn is None:
        return
    while _pending:
        kind, severity, detail = _pending.pop(0)
        fn(kind, severity, detail)


def pending():
    return list(_pending)


def dropped():
    return _dropped[0]
