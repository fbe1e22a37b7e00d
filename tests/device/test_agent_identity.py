# The provisioned identity (agent/identity.py), the update map of status
# records (agent/telemetry/records.py) and the queue bound (agent/main.py).
import json
import os

import devtest
from agent import identity
from agent.identity import IdentityError
from agent.telemetry import cbor, records
from agent.telemetry.records import RecordError

DER = b"\x30\x03\x02\x01\x01"  # a DER SEQUENCE (content is not parsed here)


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _provisioned(doc=None, files=True):
    d = devtest.tmpdir()
    os.mkdir(d + "/identity")
    if files:
        for n in ("cert", "key", "ca"):
            _write(d + "/identity/%s.der" % n, DER)
    ident = {"version": 1, "device_id": "pump-1", "model": "pump-v2",
             "broker": {"host": "127.0.0.1", "port": 8883, "server_hostname": "localhost"},
             "telemetry": {"kid": "01" * 8, "key": "02" * 16, "base_iv": "03" * 13},
             "files": {"cert": "identity/cert.der", "key": "identity/key.der", "ca": "identity/ca.der"},
             "pump": False}
    if doc:
        ident.update(doc)
    _write(d + "/identity.json", json.dumps(ident).encode())
    return d


def test_unprovisioned_is_none():
    assert identity.load(devtest.tmpdir()) is None


def test_load_identity():
    i = identity.load(_provisioned())
    assert i["device_id"] == "pump-1" and i["port"] == 8883 and i["server_hostname"] == "localhost"
    assert i["kid"] == b"\x01" * 8 and i["key"] == b"\x02" * 16 and i["base_iv"] == b"\x03" * 13
    assert i["cert_der"] == DER and i["ca_der"] == DER and i["pump"] is False


def test_server_hostname_defaults_to_host():
    i = identity.load(_provisioned({"broker": {"host": "10.0.0.5", "port": 1}}))
    assert i["server_hostname"] == "10.0.0.5"


def test_bad_identities_are_loud():
    bad = [
        {"version": 2},
        {"device_id": ""},
        {"broker": {"host": "h", "port": 0}},
        {"broker": "h:1"},
        {"telemetry": {"kid": "01" * 7, "key": "02" * 16, "base_iv": "03" * 13}},
        {"telemetry": {"kid": "zz" * 8, "key": "02" * 16, "base_iv": "03" * 13}},
        {"files": {"cert": "../x", "key": "identity/key.der", "ca": "identity/ca.der"}},
    ]
    for doc in bad:
        devtest.raises(IdentityError, identity.load, _provisioned(doc))
    devtest.raises(IdentityError, identity.load, _provisioned(files=False))
    d = devtest.tmpdir()
    _write(d + "/identity.json", b"{not json")
    devtest.raises(IdentityError, identity.load, d)
    d = _provisioned()
    _write(d + "/identity/key.der", b"-----BEGIN")
    devtest.raises(IdentityError, identity.load, d)


def test_update_status_record():
    ev = {"step": "check_failed", "reason": "transport: " + "x" * 400, "version": "1.0.0",
          "urgent": False, "done": 3, "odd": [1, 2]}
    rec = records.status_record(9, 100, "update", "1.0.0", 2, 0, update=ev)
    u = rec["update"]
    assert rec["state"] == "update" and u["step"] == "check_failed" and u["version"] == "1.0.0"
    assert len(u["reason"]) == records.MAX_UPDATE_TEXT and u["urgent"] is False and u["done"] == 3
    assert u["odd"] == "[1, 2]"
    assert cbor.loads(records.encode(rec)) == rec
    many = {}
    for i in range(40):
        many["k%02d" % i] = "v" * 200
    many["step"] = "downloading"
    u = records.update_map(many)
    assert 2 <= len(u) <= records.MAX_UPDATE_KEYS and u["step"] == "downloading"
    assert len(records.encode(records.status_record(1, 1, "update", update=many))) < 1024 - 40
    devtest.raises(RecordError, records.update_map, {})
    devtest.raises(RecordError, records.update_map, "step")


def test_queue_bound_fits_the_partition():
    from agent.telemetry.pipeline import queue_capacity

    d = devtest.tmpdir()
    st = os.statvfs(d)
    total = st[0] * st[2]
    seg = 16 * 1024
    cap = queue_capacity(d, 512 * 1024, seg)
    assert cap % seg == 0 and cap <= 512 * 1024 and cap <= total * 5 // 8
    assert queue_capacity(d, 8 * 1024, seg) == 2 * seg  # never below the queue's minimum
