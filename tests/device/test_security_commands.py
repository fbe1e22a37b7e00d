# Signed commands on the device (agent/security/commands*.py): every kind of
# bad input is refused with its reason, reported (result + event), and never
# raises; replays are refused across a restart of the runner (a reset);
# a corrupt counter store fails closed. Envelopes: data/commands/cases.json
# (made by data/commands/make_fixtures.py with fixed keys).
import json

import devtest
from agent.security import commands as C
from agent.security import events
from agent.security.commands_run import CommandRunner


def _fixture():
    with open(devtest.data_path("commands/cases.json")) as f:
        return json.loads(f.read())


def _runner(fx, d=None, now=None):
    d = d or devtest.tmpdir()
    results = []
    r = CommandRunner(d, fx["device"], fx["model"], lambda: now or fx["now"], results.append)
    r.install_policy(json.dumps(fx["policy"]).encode())
    ran = []
    for name in C.COMMANDS:
        r.actions[name] = (lambda n: lambda args: ran.append((n, args)))(name)
    return r, results, ran, d


def _capture():
    seen = []
    events.set_sink(lambda k, s, d: None)  # earlier tests' pending events
    events.set_sink(lambda k, s, d: seen.append((k, s, d)))
    return seen


def test_every_case_gets_its_answer_and_a_result():
    fx = _fixture()
    seen = _capture()
    for name, env, want in fx["cases"]:
        r, results, ran, d = _runner(fx)
        res = r.handle(env.encode())
        assert results == [res], name
        if want is None:
            assert res["result"] == "done", (name, res)
            assert len(ran) == 1, name
            assert seen[-1][0] == "command_accepted", name
        else:
            assert res["result"] == "refused", (name, res)
            assert want in res["reason"], (name, res, want)
            assert ran == [], name
            assert seen[-1][0] == "command_refused" and seen[-1][2]["reason"] == want, (name, seen[-1])
    events.set_sink(None)


def test_replay_refused_also_after_a_restart():
    fx = _fixture()
    r, results, ran, d = _runner(fx)
    assert r.handle(fx["replay"].encode())["result"] == "done"
    res = r.handle(fx["replay"].encode())
    assert res["result"] == "refused" and res["reason"].startswith("replayed"), res
    # A reset: a new runner on the same state directory.
    r2, results2, ran2, _ = _runner(fx, d)
    res = r2.handle(fx["replay"].encode())
    assert res["result"] == "refused" and res["reason"].startswith("replayed"), res
    assert ran2 == []


def test_counter_rises_per_issuer():
    fx = _fixture()
    cases = {}
    for name, env, want in fx["cases"]:
        cases[name] = env
    r, results, ran, d = _runner(fx)
    # admin ctr 6 (model wide) first, then admin ctr 5: lower counter refused.
    assert r.handle(cases["ok_model_wide"].encode())["result"] == "done"
    res = r.handle(cases["ok_admin_quarantine"].encode())
    assert res["reason"].startswith("replayed"), res
    # Another issuer's counter is its own.
    assert r.handle(cases["ok_operator_report"].encode())["result"] == "done"


def test_corrupt_counter_store_refuses_commands_issued_before():
    fx = _fixture()
    d = devtest.tmpdir()
    with open(d + "/cmdctr.json", "w") as f:
        f.write("{garbage")
    seen = _capture()
    r, results, ran, _ = _runner(fx, d)
    events.set_sink(None)
    assert ("integrity_violation" in [e[0] for e in seen])
    res = r.handle(fx["replay"].encode())
    assert res["result"] == "refused" and res["reason"].startswith("replayed"), res


def test_no_policy_refuses_everything():
    fx = _fixture()
    r = CommandRunner(devtest.tmpdir(), fx["device"], fx["model"], lambda: fx["now"])
    res = r.handle(fx["replay"].encode())
    assert res["result"] == "refused" and res["reason"] == "no command policy", res


def test_policy_not_rolled_back_and_survives_restart():
    fx = _fixture()
    r, results, ran, d = _runner(fx)
    older = dict(fx["policy"])
    older["version"] = 0
    devtest.raises(C.PolicyError, r.install_policy, json.dumps(older).encode())
    other = dict(fx["policy"])
    other["model"] = "monitor-v1"
    devtest.raises(C.PolicyError, r.install_policy, json.dumps(other).encode())
    r2 = CommandRunner(d, fx["device"], fx["model"], lambda: fx["now"])
    assert r2.policy is not None and r2.policy.version == 1


def test_garbage_never_raises():
    fx = _fixture()
    r, results, ran, d = _runner(fx)
    for junk in (b"", b"\xff\xfe", b"[]", b"null", b'{"payload": 5}', b'{"payload": "{}", "sig": {"keyid": 1}}',
                 b'{"payload": "{}", "sig": {"keyid": "a", "sig": "zz"}}', b"{" * 600):
        res = r.handle(junk)
        assert res["result"] == "refused", (junk, res)
    assert ran == []


def test_out_of_memory_is_retried_not_refused():
    fx = _fixture()
    r, results, ran, d = _runner(fx)
    real = C.verify
    fails = [2]

    def flaky(*a):
        if fails[0]:
            fails[0] -= 1
            raise MemoryError()
        return real(*a)

    C.verify = flaky
    try:
        assert r.handle(fx["replay"].encode()) is None  # kept for a retry
        assert r.retry() is None  # second attempt: out of memory again
        res = r.retry()  # third: verifies
    finally:
        C.verify = real
    assert res["result"] == "done" and results == [res] and len(ran) == 1, (res, results)
    assert r.retry() is None and len(results) == 1
