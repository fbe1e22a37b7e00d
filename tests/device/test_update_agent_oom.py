# The update agent when a check runs out of memory (agent/updates.py).
# Out of memory is the heap's state at that moment, not the release's or the
# network's fault: the check is retried soon, with backoff, never a whole
# check period later (a board checking hourly would otherwise stay on old
# firmware for an hour because of one fragmented heap; seen in the full suite
# as tests/e2e/test_update_board.py timing out on "up_to_date").
import devtest
from agent import updates


class Board:
    def __init__(self, root):
        self.root = root

    def mounts(self):
        return {"state": self.root + "/state", "slot_a": self.root + "/a", "slot_b": self.root + "/b"}

    def watchdog_feed(self):
        pass


class TufClient:
    # Stands for the refreshed TUF updater: `fail` refreshes run out of
    # memory, then the repository has nothing for this model.
    def __init__(self, fail):
        self.fail = fail
        self.trusted = {}
        self.refreshes = 0

    def refresh(self):
        self.refreshes += 1
        if self.refreshes <= self.fail[0]:
            raise MemoryError("memory allocation failed, allocating 4096 bytes")

    def get_targetinfo(self, path):
        return None

    def list_targets(self, prefix):
        return []


def make_agent(fail_first):
    d = devtest.tmpdir()
    for sub in ("/state", "/state/tuf", "/a", "/b"):
        devtest._mkdirs(d + sub)
    with open(d + "/state/tuf/root.json", "w") as f:
        f.write("{}")
    reports = []
    cfg = {"update": {"metadata_url": "http://127.0.0.1:9/metadata", "check_every_s": 3600}}
    ag = updates.UpdateAgent(Board(d), "a", False, cfg, reports.append)
    client = TufClient([fail_first])
    ag._tuf = lambda now: client
    return ag, reports, client


def test_a_check_out_of_memory_is_retried_soon_with_backoff_then_resets():
    ag, reports, client = make_agent(3)
    ag.tick(1000)
    assert client.refreshes == 1
    r = reports[-1]
    assert r["step"] == "error" and r["reason"] == "out of memory", r
    assert r["retry_in_s"] == updates.OOM_RETRY_S and ag.next_check == 1000 + updates.OOM_RETRY_S, r
    assert "test_update_agent_oom" in r["where"], r  # where the allocation failed
    ag.tick(1000 + updates.OOM_RETRY_S - 1)
    assert client.refreshes == 1  # not before the retry time
    ag.tick(1000 + updates.OOM_RETRY_S)
    assert client.refreshes == 2 and reports[-1]["retry_in_s"] == 2 * updates.OOM_RETRY_S, reports[-1]
    t = 1000 + 3 * updates.OOM_RETRY_S
    ag.tick(t)
    assert client.refreshes == 3 and reports[-1]["retry_in_s"] == 4 * updates.OOM_RETRY_S
    t += 4 * updates.OOM_RETRY_S
    ag.tick(t)  # the heap has room again: the check completes
    assert client.refreshes == 4 and reports[-1]["step"] == "up_to_date", reports[-1]
    assert ag.next_check == t + 3600  # back to the check period
    client.fail[0] = 5  # a later shortage starts again at the short retry
    ag.tick(t + 3600)
    assert reports[-1]["retry_in_s"] == updates.OOM_RETRY_S, reports[-1]


def test_the_retry_never_waits_longer_than_the_check_period():
    ag, reports, client = make_agent(100)
    ag.cfg["check_every_s"] = 60
    t = 0
    for _ in range(8):
        ag.tick(t)
        assert reports[-1]["retry_in_s"] <= 60, reports[-1]
        t = ag.next_check
    assert client.refreshes == 8 and reports[-1]["retry_in_s"] == 60
