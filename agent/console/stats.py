# Console figures for posture (contract 3): stats(state_dir) ->
# {"failed_logins", "lockouts", "locked_accounts"}.
import time

from agent.console import lockout

COUNTERS = "/console/lockout.json"


def stats(state_dir, now=None):
    if now is None:
        now = time.time()
    try:
        d = lockout.load_file(state_dir + COUNTERS)
    except lockout.CountersCorrupt:
        return {"failed_logins": -1, "lockouts": -1, "locked_accounts": ["*"]}
    locked = []
    for name in d["users"]:
        u = d["users"][name]
        if u.get("fails", 0) >= lockout.MAX_FAILS and now < u.get("until", 0):
            locked.append(name)
    locked.sort()
    return {"failed_logins": int(d["failed"]), "lockouts": int(d["lockouts"]), "locked_accounts": locked}
