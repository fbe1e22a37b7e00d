# Failed-login counters on flash: growing delay, lock after MAX_FAILS.
#
# Power cuts never buy guesses: an attempt is committed to flash as pending
# (fails + 1) BEFORE the credentials are checked, and the answer is given
# only after that write. A pending attempt found at load (the board lost
# power between commit and answer) counts as a failure. Every write is
# atomic (temp + rename), so a cut leaves the old or the new counters.
# Times are board clock seconds (RTC); a lock holds while now < until.
import json

from board.compat import write_atomic

MAX_FAILS = 5
LOCK_S = 900
MAX_DELAY_S = 30
ANY = "*"  # one counter shared by every unknown user name (bounded file)


class CountersCorrupt(ValueError):
    # The counter file exists but cannot be read: login fails closed.
    pass


def delay_after(fails):
    if fails <= 0:
        return 0
    d = 1 << (fails - 1)
    return d if d < MAX_DELAY_S else MAX_DELAY_S


def load_file(path):
    try:
        f = open(path)
    except OSError:
        return {"users": {}, "failed": 0, "lockouts": 0}
    try:
        with f:
            d = json.loads(f.read())
        if not isinstance(d, dict) or not isinstance(d.get("users"), dict):
            raise ValueError("not a counter file")
        int(d["failed"]) + int(d["lockouts"])
        return d
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise CountersCorrupt("console counters unreadable: %s" % e)


class Lockout:
    def __init__(self, path, now, write=write_atomic):
        self.path = path
        self._write = write
        self.data = load_file(path)
        dirty = False
        for name in self.data["users"]:
            if self.data["users"][name].get("pending"):
                self._finalize(name, now)  # cut between commit and answer
                dirty = True
        if dirty:
            self._save()

    def _save(self):
        self._write(self.path, json.dumps(self.data))

    def user(self, name):
        u = self.data["users"].get(name)
        if u is None:
            u = {"fails": 0, "at": 0, "until": 0, "step": -1}
        return u

    def check(self, name, now):
        # None when an attempt may be made; else (reason, seconds to wait).
        u = self.user(name)
        if u["fails"] >= MAX_FAILS:
            if now < u["until"]:
                return ("locked", u["until"] - now)
            return None  # the lock ran out; begin() starts a new count
        wait = u["at"] + delay_after(u["fails"]) - now
        if u["fails"] and wait > 0:
            return ("wait", wait)
        return None

    def begin(self, name, now):
        # Commit the attempt before anything is checked.
        u = self.user(name)
        if u["fails"] >= MAX_FAILS and now >= u["until"]:
            u["fails"] = 0
        u["fails"] += 1
        u["pending"] = 1
        u["at"] = now
        self.data["users"][name] = u
        self._save()

    def _finalize(self, name, now):
        u = self.data["users"][name]
        u.pop("pending", None)
        self.data["failed"] += 1
        locked = u["fails"] >= MAX_FAILS
        if locked:
            u["until"] = now + LOCK_S
            self.data["lockouts"] += 1
        return locked

    def failed(self, name, now):
        # True when this failure locked the account.
        locked = self._finalize(name, now)
        self._save()
        return locked

    def succeeded(self, name, step):
        u = self.user(name)
        self.data["users"][name] = {"fails": 0, "at": 0, "until": 0, "step": step}
        self._save()
        return u

    def unlock(self, name):
        u = self.user(name)
        u["fails"] = 0
        u["until"] = 0
        u.pop("pending", None)
        self.data["users"][name] = u
        self._save()

    def last_step(self, name):
        return self.user(name).get("step", -1)
