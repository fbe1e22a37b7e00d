# Synthetic vitals and the scriptable pump of the simulated board.
import json
import devtest
from board.sim import sensors


def test_vitals_are_plausible_over_an_hour():
    p = sensors.Patient(12345)
    for t in range(0, 3600, 7):
        v = p.vitals(1700000000 + t)
        assert 50 <= v["hr"] <= 110
        assert 90 <= v["spo2"] <= 100
        assert 95 <= v["bp_sys"] <= 150 and 55 <= v["bp_dia"] <= 95
        assert v["bp_sys"] > v["bp_dia"]
        assert 35.5 <= v["temp"] <= 38.0


def test_boards_differ_and_are_deterministic():
    a, b = sensors.Patient(1), sensors.Patient(2)
    t = 1700000000
    assert a.vitals(t) == sensors.Patient(1).vitals(t)
    assert [a.vitals(t + i) for i in range(5)] != [b.vitals(t + i) for i in range(5)]


def _script(path, obj):
    with open(path, "w") as f:
        f.write(json.dumps(obj))


def test_pump_idle_without_script():
    p = sensors.Pump(devtest.tmpdir() + "/pump.json")
    assert p.read(100.0)["state"] == "idle"


def test_pump_integrates_volume_and_completes():
    path = devtest.tmpdir() + "/pump.json"
    _script(path, {"state": "infusing", "rate": 120.0, "vtbi": 10.0, "started": 1000.0})
    p = sensors.Pump(path)
    r = p.read(1000.0 + 60)  # 1 minute at 120 mL/h = 2 mL
    assert r["state"] == "infusing" and abs(r["infused"] - 2.0) < 1e-6
    r = p.read(1000.0 + 3600)
    assert r["state"] == "idle" and r["infused"] == 10.0


def test_pump_alarm_overrides_state():
    path = devtest.tmpdir() + "/pump.json"
    _script(path, {"state": "infusing", "rate": 50.0, "vtbi": 100.0, "started": 0, "alarms": ["OCCLUSION"]})
    r = sensors.Pump(path).read(10.0)
    assert r["state"] == "alarm" and r["alarms"] == ["OCCLUSION"]


def test_pump_keeps_last_good_script_on_garbage():
    path = devtest.tmpdir() + "/pump.json"
    _script(path, {"state": "infusing", "rate": 60.0, "vtbi": 100.0, "started": 0})
    p = sensors.Pump(path)
    assert p.read(60.0)["state"] == "infusing"
    with open(path, "w") as f:
        f.write("{not json, longer than before")
    assert p.read(120.0)["state"] == "infusing"
