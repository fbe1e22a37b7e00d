# The resident part of the signed commands (agent/security/commands_inbox.py):
# envelopes wait in a bounded inbox; the verifier and the runner are imported
# on the housekeeping turn and released after it (their code off the heap
# between commands); a policy the TUF hook downloaded is put in force on the
# next turn; oversized and surplus envelopes are refused without being kept.
# The agent here is a stand-in holding what the inbox reads (board clock,
# state mount, model, identity): the real Agent needs a running board.
import gc
import json
import sys

import devtest
from agent.security import commands_inbox
from agent.security import events
from board import netguard

TRANSIENT = ("agent.security.commands", "agent.security.commands_run", "agent.security.flags",
             "updater.crypto.verify", "updater.crypto.ed25519")


class _Board:
    def __init__(self, state, now):
        self.state = state
        self.now = now
        self.resets = []

    def mounts(self):
        return {"state": self.state}

    def time(self):
        return self.now

    def read_pump(self):
        return {"state": "idle", "alarms": []}

    def reset(self, why):
        self.resets.append(why)


class _Updates:
    def __init__(self, model):
        self.model = model
        self.cfg = {}


class _Agent:
    def __init__(self, fx):
        self.board = _Board(devtest.tmpdir(), fx["now"])
        self.updates = _Updates(fx["model"])
        self.ident = {"device_id": fx["device"]}
        self.tel = None
        self.reports = 0

    def report(self):
        self.reports += 1


def _fixture():
    with open(devtest.data_path("commands/cases.json")) as f:
        return json.loads(f.read())


def _inbox(fx):
    ag = _Agent(fx)
    inbox = commands_inbox.CommandInbox(ag, ["broker:8883"])
    with open(ag.board.state + "/" + commands_inbox.NEW_POLICY, "w") as f:
        f.write(json.dumps(fx["policy"]))  # as the TUF hook leaves it
    return ag, inbox


def _loaded():
    return [m for m in TRANSIENT if m in sys.modules]


def _case(fx, name):
    for c in fx["cases"]:
        if c[0] == name:
            return c[1].encode()
    raise KeyError(name)


def test_turn_runs_the_command_and_releases_the_verifier():
    fx = _fixture()
    events.set_sink(lambda k, s, d: None)
    seen = []
    events.set_sink(lambda k, s, d: seen.append((k, d)))
    ag, inbox = _inbox(fx)
    for m in _loaded():  # earlier tests in this process
        del sys.modules[m]
    inbox.tick()  # learns the pending policy; no command: nothing stays loaded
    assert inbox.stats_map() == {"accepted": 0, "refused": 0, "policy": 1}, inbox.stats_map()
    assert _loaded() == [], _loaded()
    inbox.receive(_case(fx, "ok_operator_report"))
    inbox.receive(_case(fx, "unknown_key"))
    assert inbox.stats_map()["accepted"] == 0  # nothing runs in the receiver
    inbox.tick()
    s = inbox.stats_map()
    assert s["accepted"] == 1 and s["refused"] == 1 and ag.reports == 1, s
    assert [e[0] for e in seen[-2:]] == ["command_accepted", "command_refused"], seen
    assert _loaded() == [], _loaded()
    # The policy is read from flash on each turn: still in force.
    inbox.receive(fx["replay"].encode())
    inbox.tick()
    assert inbox.stats_map()["accepted"] == 2 and _loaded() == []
    events.set_sink(None)
    devtest.reset_netguard()  # the quarantine narrowed it


def test_turn_gives_its_heap_back():
    fx = _fixture()
    ag, inbox = _inbox(fx)
    inbox.tick()
    inbox.receive(_case(fx, "ok_operator_report"))
    inbox.tick()  # warm: the first turn may leave interned names behind
    gc.collect()
    before = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
    inbox.receive(fx["replay"].encode())
    inbox.tick()
    gc.collect()
    after = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
    assert inbox.stats_map()["accepted"] == 2
    # verifier + runner: ~18 KiB of code while loaded; after the turn only
    # the result bookkeeping may remain.
    assert after - before < 2048, (before, after)
    devtest.reset_netguard()


def test_oversized_and_surplus_envelopes_are_refused_unkept():
    fx = _fixture()
    ag, inbox = _inbox(fx)
    big = b"{" + b" " * commands_inbox.MAX_ENVELOPE + b"}"
    inbox.receive(big)
    assert inbox.waiting == [len(big)]  # only its length is kept
    for _ in range(commands_inbox.MAX_WAITING):
        inbox.receive(fx["replay"].encode())
    assert len(inbox.waiting) == commands_inbox.MAX_WAITING and inbox.refused == 1  # busy
    inbox.tick()
    s = inbox.stats_map()
    # oversized, accepted, then the same envelope twice more: replayed
    assert s["accepted"] == 1 and s["refused"] == 1 + 1 + 2, s
    assert inbox.waiting == []
    devtest.reset_netguard()


def test_out_of_memory_loading_the_runner_is_retried_then_refused():
    fx = _fixture()
    ag, inbox = _inbox(fx)
    inbox.tick()
    inbox.receive(fx["replay"].encode())
    real = inbox._turn
    fails = [commands_inbox.RETRIES]

    def flaky():
        if fails[0]:
            fails[0] -= 1
            raise MemoryError()
        return real()

    inbox._turn = flaky
    for i in range(commands_inbox.RETRIES - 1):
        inbox.tick()
        assert len(inbox.waiting) == 1 and inbox.refused == 0, i
    inbox.tick()  # the last attempt: refused, dropped
    assert inbox.waiting == [] and inbox.refused == 1


def test_reboot_waits_for_the_next_turn_and_the_clinical_gate():
    fx = _fixture()
    ag, inbox = _inbox(fx)
    inbox.reboot_pending = "command"
    ag.board.read_pump = lambda: {"state": "infusing", "alarms": []}
    inbox.tick()
    assert ag.board.resets == [] and inbox.reboot_pending is None
    inbox.reboot_pending = "command"
    ag.board.read_pump = lambda: {"state": "idle", "alarms": []}
    inbox.tick()
    assert ag.board.resets == ["command: reboot"]
