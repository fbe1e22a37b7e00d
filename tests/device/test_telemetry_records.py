# Plaintext records per SEALING.md section 5.
import binascii
import json

import devtest
from agent.telemetry import cbor, records
from agent.telemetry.records import RecordError

SAMPLE = {"hr": 72, "spo2": 98, "bp_sys": 118, "bp_dia": 76, "temp": 36.75,
          "pump": {"state": "running", "rate": 25.0, "vtbi": 100.0, "infused": 12.5, "alarms": []}}


def test_record_matches_worked_example():
    with open(devtest.repo_path("host_tools/collector/sealing_vector.json")) as f:
        v = json.load(f)
    rec = records.telemetry_record(SAMPLE, 258, 1764489600)
    # Same content as the documented plaintext (encoding may be shorter:
    # floats that are exact in single precision go out as float32).
    assert cbor.loads(records.encode(rec)) == cbor.loads(binascii.unhexlify(v["plaintext"]))
    assert rec == v["record"]


def test_missing_and_null_vitals():
    rec = records.telemetry_record({"hr": None, "temp": None}, 5, 100)
    assert rec == {"t": 100, "seq": 5, "hr": None, "temp": None}
    assert cbor.loads(records.encode(rec)) == rec


def test_skip_range():
    rec = records.telemetry_record({"hr": 60}, 65, 1, skip=(11, 64))
    assert rec["skip"] == [11, 64]
    devtest.raises(RecordError, records.telemetry_record, {}, 65, 1, (11, 65))
    devtest.raises(RecordError, records.telemetry_record, {}, 65, 1, (20, 10))
    devtest.raises(RecordError, records.telemetry_record, {}, 65, 1, (0, 10))


BAD = [
    ({"hr": -1}, "negative hr"),
    ({"hr": 72.5}, "float hr"),
    ({"spo2": True}, "bool spo2"),
    ({"temp": "36"}, "text temp"),
    ({"temp": float("nan")}, "nan temp"),
    ({"pump": {"state": "exploded", "rate": 1, "vtbi": 1, "infused": 0}}, "pump state"),
    ({"pump": {"state": "idle", "rate": None, "vtbi": 1, "infused": 0}}, "pump rate none"),
    ({"pump": {"state": "idle", "rate": 1, "vtbi": 1, "infused": 0, "alarms": "OCCL"}}, "alarms text"),
    ({"pump": {"state": "idle", "rate": 1, "vtbi": 1, "infused": 0, "alarms": [""]}}, "empty alarm"),
    ({"pump": {"state": "idle", "rate": 1, "vtbi": 1, "infused": 0, "alarms": ["A"] * 17}}, "too many alarms"),
    ({"pump": "running"}, "pump not a dict"),
]


def test_bad_samples_table():
    for sample, why in BAD:
        e = devtest.raises(RecordError, records.telemetry_record, sample, 1, 1)
        assert isinstance(e, ValueError), why
    devtest.raises(RecordError, records.telemetry_record, [1, 2], 1, 1)


def test_status_record_and_last_will():
    rec = records.status_record(7, 1000, "online", fw="1.2.0", queued=3, dropped=0)
    assert cbor.loads(records.encode(rec)) == {"t": 1000, "seq": 7, "state": "online",
                                                "fw": "1.2.0", "queued": 3, "dropped": 0}
    assert records.LAST_WILL == binascii.unhexlify("a1657374617465676f66666c696e65")
    devtest.raises(RecordError, records.status_record, 7, 1000, "")
