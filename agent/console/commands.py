# Console commands and the least role each needs. No command reads a key or
# runs code: each one calls an operation the agent hands in (ops[name]).
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
