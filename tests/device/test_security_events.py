# agent/security/events.py: the emit/set_sink contract other modules call.
import devtest
from agent.security import events


def test_pending_is_bounded_and_flushed_to_the_sink():
    devtest.reset_events()
    for i in range(events.MAX_PENDING + 5):
        events.emit("tuf_failure", "warning", {"i": i})
    assert events.pending() == events.MAX_PENDING
    assert events.stats["dropped"] == 5
    got = []
    events.set_sink(lambda k, s, d: got.append((k, s, d)))
    assert events.pending() == 0
    assert len(got) == events.MAX_PENDING
    assert got[0] == ("tuf_failure", "warning", {"i": 0})
    events.emit("boot")
    assert got[-1] == ("boot", "info", None)
    devtest.reset_events()


def test_a_failing_sink_never_breaks_the_caller():
    devtest.reset_events()

    def bad(k, s, d):
        raise OSError(28)

    events.set_sink(bad)
    assert events.emit("queue_drop", "warning", {"n": 1}) is False
    assert events.stats["sink_errors"] == 1
    devtest.reset_events()


def test_unknown_severity_fails_closed_and_detail_is_a_map():
    devtest.reset_events()
    got = []
    events.set_sink(lambda k, s, d: got.append((k, s, d)))
    events.emit("egress_blocked", "bogus", "10.0.0.1:80")
    events.emit(None)
    assert got[0] == ("egress_blocked", "warning", {"value": "10.0.0.1:80"})
    assert got[1][0] == "unknown"
    devtest.reset_events()
