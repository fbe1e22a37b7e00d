# Persistent security flags (agent/security/flags.py, ROUND2 contract 2).
import devtest
from agent.security import events, flags


def test_defaults_and_round_trip():
    d = devtest.tmpdir()
    assert flags.load(d) == {"quarantine": False, "console_unlock_until": 0}
    flags.set_quarantine(d, True)
    flags.set_console_unlock(d, 1000)
    assert flags.load(d) == {"quarantine": True, "console_unlock_until": 1000}
    assert not flags.console_allowed(d, 1000)
    assert flags.console_allowed(d, 999)
    flags.set_quarantine(d, False)
    assert flags.console_allowed(d, 5000)


def test_corrupt_file_fails_closed_and_is_reported():
    seen = []
    events.set_sink(lambda k, s, det: None)  # earlier tests' pending events
    events.set_sink(lambda k, s, det: seen.append(k))
    for text in ("{", "[]", '{"quarantine": "yes", "console_unlock_until": 99999999}',
                 '{"quarantine": true, "console_unlock_until": -1}'):
        d = devtest.tmpdir()
        with open(d + "/security.json", "w") as f:
            f.write(text)
        assert flags.load(d)["console_unlock_until"] == 0, text
    events.set_sink(None)
    assert seen == ["integrity_violation"] * 4, seen
    devtest.raises(ValueError, flags.set_console_unlock, devtest.tmpdir(), -5)
