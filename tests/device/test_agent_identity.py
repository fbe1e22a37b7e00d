# The provisioned identity (agent/identity.py), the update map of status
# records (agent/telemetry/records.py) and the queue bound (agent/main.py).
import binascii
import json
import os

import devtest
from agent import identity, keystore
from agent.identity import IdentityError
from agent.telemetry import cbor, records
from agent.telemetry.records import RecordError

DER = b"\x30\x03\x02\x01\x01"  # a DER SEQUENCE (content is not parsed here)
DK = b"\x5a" * 16  # this board's device key
TEL_KEY = b"\x02" * 16


class FuseBoard:
    # The two HAL calls identity.load makes: the lock fuse and the device key.
    def __init__(self, lock="locked", key=DK):
        self.lock = lock
        self.key = key

    def lock_state(self):
        return self.lock

    def device_key(self):
        if self.key is None:
            raise OSError("device key not programmed")
        return self.key


BOARD = FuseBoard()


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _telemetry(key=TEL_KEY, dk=DK):
    return {"kid": "01" * 8, "base_iv": "03" * 13,
            "sealed_key": binascii.hexlify(keystore.seal(dk, "telemetry-key", key)).decode()}


def _provisioned(doc=None, files=True):
    d = devtest.tmpdir()
    os.mkdir(d + "/identity")
    if files:
        for n in ("cert", "ca"):
            _write(d + "/identity/%s.der" % n, DER)
        _write(d + "/identity/key.sealed", keystore.seal(DK, "tls-key", DER))
    ident = {"version": 2, "device_id": "pump-1", "model": "pump-v2",
             "broker": {"host": "127.0.0.1", "port": 8883, "server_hostname": "localhost"},
             "telemetry": _telemetry(),
             "files": {"cert": "identity/cert.der", "key": "identity/key.sealed", "ca": "identity/ca.der"},
             "pump": False}
    if doc:
        ident.update(doc)
    _write(d + "/identity.json", json.dumps(ident).encode())
    return d


def test_unprovisioned_is_none():
    assert identity.load(devtest.tmpdir(), BOARD) is None


def test_load_identity_unseals_the_keys():
    i = identity.load(_provisioned(), BOARD)
    assert i["device_id"] == "pump-1" and i["port"] == 8883 and i["server_hostname"] == "localhost"
    assert i["kid"] == b"\x01" * 8 and i["key"] == TEL_KEY and i["base_iv"] == b"\x03" * 13
    assert i["cert_der"] == DER and i["key_der"] == DER and i["ca_der"] == DER and i["pump"] is False


def test_identity_on_an_open_board_is_not_used():
    # The lock fuse is the commit of provisioning: before it, no identity.
    assert identity.load(_provisioned(), FuseBoard("open")) is None
    # unknown lock state counts as locked: the identity is read (and must unseal)
    assert identity.load(_provisioned(), FuseBoard("unknown"))["device_id"] == "pump-1"


def test_keys_do_not_open_under_another_board_key():
    devtest.raises(IdentityError, identity.load, _provisioned(), FuseBoard(key=b"\x5b" * 16))
    devtest.raises(IdentityError, identity.load, _provisioned(), FuseBoard(key=None))
    # a blob sealed as the TLS key is not accepted as the telemetry key
    swapped = {"kid": "01" * 8, "base_iv": "03" * 13,
               "sealed_key": binascii.hexlify(keystore.seal(DK, "tls-key", TEL_KEY)).decode()}
    devtest.raises(IdentityError, identity.load, _provisioned({"telemetry": swapped}), BOARD)


def test_server_hostname_defaults_to_host():
    i = identity.load(_provisioned({"broker": {"host": "10.0.0.5", "port": 1}}), BOARD)
    assert i["server_hostname"] == "10.0.0.5"


def test_cluster_endpoints_are_read_and_allowed_by_the_egress_guard():
    from agent.security import flags

    b = {"host": "10.0.0.5", "port": 8883, "endpoints": [["10.0.0.5", 8883], ["10.0.0.6", 8884], ["10.0.0.7", 8885]]}
    i = identity.load(_provisioned({"broker": b}), BOARD)
    assert i["endpoints"] == [("10.0.0.5", 8883), ("10.0.0.6", 8884), ("10.0.0.7", 8885)]
    assert flags.core_endpoints(i, {}) == ["10.0.0.5:8883", "10.0.0.6:8884", "10.0.0.7:8885"]
    assert identity.load(_provisioned(), BOARD)["endpoints"] is None


def test_bad_identities_are_loud():
    bad = [
        {"broker": {"host": "h", "port": 1, "endpoints": []}},
        {"broker": {"host": "h", "port": 1, "endpoints": [["h", 1], ["g", 0]]}},
        {"broker": {"host": "h", "port": 1, "endpoints": [["g", 1], ["h", 1]]}},   # not first
        {"broker": {"host": "h", "port": 1, "endpoints": [["h", 1]] * 9}},
        {"broker": {"host": "h", "port": 1, "endpoints": "h:1"}},
        {"version": 3},
        {"version": 1, "telemetry": {"kid": "01" * 8, "key": "02" * 16, "base_iv": "03" * 13}},
        {"device_id": ""},
        {"broker": {"host": "h", "port": 0}},
        {"broker": "h:1"},
        {"telemetry": dict(_telemetry(), kid="01" * 7)},
        {"telemetry": dict(_telemetry(), kid="zz" * 8)},
        {"telemetry": {"kid": "01" * 8, "key": "02" * 16, "base_iv": "03" * 13}},
        {"telemetry": _telemetry(key=b"\x02" * 15)},
        {"files": {"cert": "../x", "key": "identity/key.sealed", "ca": "identity/ca.der"}},
        {"files": {"cert": "identity/cert.der", "key": "identity/cert.der", "ca": "identity/ca.der"}},
    ]
    for doc in bad:
        devtest.raises(IdentityError, identity.load, _provisioned(doc), BOARD)
    devtest.raises(IdentityError, identity.load, _provisioned(files=False), BOARD)
    d = devtest.tmpdir()
    _write(d + "/identity.json", b"{not json")
    devtest.raises(IdentityError, identity.load, d, BOARD)
    d = _provisioned()
    _write(d + "/identity/cert.der", b"-----BEGIN")
    devtest.raises(IdentityError, identity.load, d, BOARD)
    d = _provisioned()
    blob = bytearray(keystore.seal(DK, "tls-key", DER))
    blob[-1] ^= 1  # tampered on flash
    _write(d + "/identity/key.sealed", bytes(blob))
    devtest.raises(IdentityError, identity.load, d, BOARD)


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
