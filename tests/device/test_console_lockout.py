# Lockout counters on flash: growing delay, lock after MAX_FAILS, and a
# power cut at every write of the counter update never buys a guess.
import json

import devtest
from agent.console import lockout, stats
from agent.console.lockout import Lockout, MAX_FAILS, LOCK_S
from board.compat import rename_atomic

NOW = 1800000000


class PowerCut(BaseException):
    pass


class CutWriter:
    # write_atomic with a cut at write number `at` (1-based), either before
    # the temp file is written or after it but before the rename.
    def __init__(self, at, after_tmp):
        self.at = at
        self.after_tmp = after_tmp
        self.n = 0

    def __call__(self, path, data):
        self.n += 1
        if self.n == self.at and not self.after_tmp:
            raise PowerCut()
        with open(path + ".tmp", "w") as f:
            f.write(data)
        if self.n == self.at:
            raise PowerCut()
        rename_atomic(path + ".tmp", path)


def _attack(d, writer, max_boots=50):
    # Guess until refused as locked; each boot reloads the counters from
    # flash. Returns the number of guesses that got an answer.
    answered = 0
    now = NOW
    boots = 0
    while boots < max_boots:
        boots += 1
        try:
            lock = Lockout(d + "/lockout.json", now, write=writer)
            while True:
                refused = lock.check("tech", now)
                if refused is not None and refused[0] == "locked":
                    return answered, lock
                if refused is not None:
                    now += refused[1]
                    continue
                lock.begin("tech", now)
                answered += 1  # the attacker learns "wrong" from here on
                lock.failed("tech", now)
        except PowerCut:
            writer.at = -1  # one cut per run; the board boots again
    raise AssertionError("never locked")


def test_lock_after_max_fails_with_growing_delay():
    d = devtest.tmpdir()
    lock = Lockout(d + "/lockout.json", NOW)
    now = NOW
    delays = []
    for i in range(MAX_FAILS):
        assert lock.check("tech", now) is None
        lock.begin("tech", now)
        locked = lock.failed("tech", now)
        assert locked == (i == MAX_FAILS - 1)
        r = lock.check("tech", now)
        delays.append(r)
        if not locked:
            now += r[1]
    assert [x[1] for x in delays[:-1]] == [1, 2, 4, 8]
    assert delays[-1] == ("locked", LOCK_S)
    # The lock survives a reload (reset) and holds for LOCK_S.
    lock = Lockout(d + "/lockout.json", now + 10)
    assert lock.check("tech", now + LOCK_S - 1)[0] == "locked"
    assert lock.check("tech", now + LOCK_S) is None
    assert lockout.delay_after(40) == lockout.MAX_DELAY_S


def test_success_resets_and_keeps_the_totp_step():
    d = devtest.tmpdir()
    lock = Lockout(d + "/lockout.json", NOW)
    lock.begin("tech", NOW)
    lock.failed("tech", NOW)
    lock.begin("tech", NOW + 5)
    lock.succeeded("tech", 1234)
    lock = Lockout(d + "/lockout.json", NOW + 6)
    assert lock.check("tech", NOW + 6) is None
    assert lock.last_step("tech") == 1234
    assert lock.data["failed"] == 1


def test_power_cut_at_every_write_buys_no_guess():
    base = devtest.tmpdir()
    runs = 0
    for after_tmp in (False, True):
        for at in range(1, 2 * MAX_FAILS + 2):
            d = base + "/c%d_%d" % (at, int(after_tmp))
            devtest._mkdirs(d)
            answered, lock = _attack(d, CutWriter(at, after_tmp))
            assert answered <= MAX_FAILS, (at, after_tmp, answered)
            assert lock.check("tech", NOW + 100)[0] == "locked"
            runs += 1
    assert runs == 2 * (2 * MAX_FAILS + 1)


def test_cut_between_commit_and_answer_counts_as_failure():
    d = devtest.tmpdir()
    lock = Lockout(d + "/lockout.json", NOW)
    for i in range(MAX_FAILS):
        lock.begin("tech", NOW)  # power lost before the answer, every time
        lock = Lockout(d + "/lockout.json", NOW)
    assert lock.check("tech", NOW)[0] == "locked"
    assert lock.data["failed"] == MAX_FAILS and lock.data["lockouts"] == 1


def test_stats_and_corrupt_counters_fail_closed():
    d = devtest.tmpdir()
    devtest._mkdirs(d + "/console")
    lock = Lockout(d + "/console/lockout.json", NOW)
    for i in range(MAX_FAILS):
        lock.begin("tech", NOW)
        lock.failed("tech", NOW)
    assert stats.stats(d, now=NOW + 1) == {"failed_logins": MAX_FAILS, "lockouts": 1,
                                           "locked_accounts": ["tech"]}
    assert stats.stats(d, now=NOW + LOCK_S + 1)["locked_accounts"] == []
    with open(d + "/console/lockout.json", "w") as f:
        f.write("{not json")
    devtest.raises(lockout.CountersCorrupt, Lockout, d + "/console/lockout.json", NOW)
    assert stats.stats(d)["locked_accounts"] == ["*"]
    with open(d + "/console/lockout.json", "w") as f:
        f.write(json.dumps({"users": []}))
    devtest.raises(lockout.CountersCorrupt, Lockout, d + "/console/lockout.json", NOW)
