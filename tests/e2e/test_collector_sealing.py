"""The sealing format itself: RFC 3610 vectors, the SEALING.md worked example,
interoperability host <-> pycose <-> the device sealer on the real MicroPython VM,
and the strictness of the collector's parser. No broker needed here.
"""
from __future__ import annotations

import json
import secrets
import textwrap
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycose.keys import SymmetricKey
from pycose.messages import CoseMessage

from host_tools import mpvm
from host_tools.collector import FleetDB, Ingestor
from host_tools.collector import cose
from host_tools.pki import FleetPKI
from tests.e2e.broker_fixtures import pycose_seal, pycose_usable_key, record

REPO = Path(__file__).resolve().parents[2]
VECTOR = json.loads((REPO / "host_tools" / "collector" / "sealing_vector.json").read_text())

# RFC 3610 §8 packet vectors #1 and #2: AES-128, M = 8 (tag), L = 2, 13-byte nonce,
# i.e. exactly the AES-CCM-16-64-128 parameters (RFC 9053 §4.2).
RFC3610 = [
    ("c0c1c2c3c4c5c6c7c8c9cacbcccdcecf", "00000003020100a0a1a2a3a4a5", "0001020304050607",
     "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e",
     "588c979a61c663d2f066d0c2c0f989806d5f6b61dac38417e8d12cfdf926e0"),
    ("c0c1c2c3c4c5c6c7c8c9cacbcccdcecf", "00000004030201a0a1a2a3a4a5", "0001020304050607",
     "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     "72c91a36e135f8cf291ca894085c87e3cc15c439c9e43a3ba091d56e10400916"),
]


@pytest.mark.parametrize("key,nonce,aad,pt,out", RFC3610)
def test_rfc3610_vectors_with_the_collector_parameters(key, nonce, aad, pt, out):
    ccm = AESCCM(bytes.fromhex(key), tag_length=cose.TAG_LEN)
    assert len(bytes.fromhex(nonce)) == cose.NONCE_LEN
    assert ccm.encrypt(bytes.fromhex(nonce), bytes.fromhex(pt), bytes.fromhex(aad)).hex() == out
    assert ccm.decrypt(bytes.fromhex(nonce), bytes.fromhex(out), bytes.fromhex(aad)).hex() == pt


def test_worked_example_matches_our_sealer_and_pycose():
    key, iv, kid = (bytes.fromhex(VECTOR[k]) for k in ("key", "base_iv", "kid"))
    assert cose.partial_iv(VECTOR["seq"]).hex() == VECTOR["partial_iv"]
    assert cose.nonce(iv, cose.partial_iv(VECTOR["seq"])).hex() == VECTOR["nonce"]
    assert cose.topic_aad(VECTOR["topic"]).hex() == VECTOR["aad"]
    assert cbor2.loads(bytes.fromhex(VECTOR["plaintext"])) == VECTOR["record"]
    ours = cose.seal(bytes.fromhex(VECTOR["plaintext"]), key=key, base_iv=iv, kid=kid,
                     seq=VECTOR["seq"], topic=VECTOR["topic"])
    theirs = pycose_seal(VECTOR["record"], seq=VECTOR["seq"], topic=VECTOR["topic"], key=key,
                         base_iv=iv, kid=kid)
    assert ours.hex() == theirs.hex() == VECTOR["message"]


def test_pycose_opens_what_the_collector_library_seals():
    for _ in range(20):
        key, iv, kid = secrets.token_bytes(16), b"\x5a" + secrets.token_bytes(12), secrets.token_bytes(8)
        seq = secrets.randbelow(1 << 40 - 1) + 1
        topic = "medsentry/dev-%d/telemetry" % secrets.randbelow(100)
        pt = cbor2.dumps(record(seq))
        msg = CoseMessage.decode(cose.seal(pt, key=key, base_iv=iv, kid=kid, seq=seq, topic=topic))
        msg.key = SymmetricKey(k=key, optional_params={"BASE_IV": iv})
        msg.external_aad = topic.encode()
        assert msg.decrypt() == pt


def _valid():
    key, iv, kid = (bytes.fromhex(VECTOR[k]) for k in ("key", "base_iv", "kid"))
    return key, iv, kid, bytes.fromhex(VECTOR["message"])


@pytest.mark.parametrize("mutate,why", [
    (lambda m: m[:-1], "premature end"),
    (lambda m: m + b"\x00", "trailing"),
    (lambda m: m[1:], "tag 16"),                                      # untagged
    (lambda m: m.replace(b"\x43\xa1\x01\x0a", b"\x43\xa1\x01\x0b", 1), "protected"),   # alg 11
    (lambda m: m.replace(b"\xa2\x04\x48", b"\xa1\x04\x48", 1), "trailing"),   # map(1), stray items
    (lambda m: m.replace(b"\x06\x42\x01\x02", b"\x06\x43\x00\x01\x02", 1), "minimal"),  # PIV 00 01 02
    (lambda m: b"\xd0\x83\x43\xa1\x01\x0a\xa3\x04\x48" + bytes(8) + b"\x06\x41\x01\x05\x4d" + bytes(13) + b"\x48" + bytes(8), "exactly"),
    (lambda m: b"\xd0\x83\x43\xa1\x01\x0a\xa2\x04\x48" + bytes(8) + b"\x06\x42\x00\x01\x48" + bytes(8), "minimal"),
    (lambda m: b"\xd0\x83\x43\xa1\x01\x0a\xa2\x04\x48" + bytes(8) + b"\x06\x40\x48" + bytes(8), "Partial IV"),
    (lambda m: b"\xd0\x83\x43\xa1\x01\x0a\xa2\x04\x48" + bytes(8) + b"\x06\x41\x01\x47" + bytes(7), "at least 8"),
    (lambda m: b"\xd0\x82\x43\xa1\x01\x0a\xa0", "3-element"),
    (lambda m: m.replace(b"\xa2\x04\x48", b"\xa2\x04\x58\x08", 1), "deterministic"),   # long bstr head
    (lambda m: m.replace(b"\xa2\x04\x48" + m[9:17] + b"\x06\x42\x01\x02",
                         b"\xa2\x06\x42\x01\x02\x04\x48" + m[9:17], 1), "deterministic"),  # 6 before 4
    (lambda m: b"\x59\x04\x01" + bytes(1025), "exceeds"),
])
def test_parser_rejects_off_profile_messages(mutate, why):
    *_, good = _valid()
    cose.parse(good)
    with pytest.raises(cose.CoseError) as exc:
        cose.parse(mutate(good))
    assert why in str(exc.value)


DEVICE_SCRIPT = textwrap.dedent("""
    import sys
    from agent.telemetry import cbor, cose, records
    kid, key, iv = [bytes.fromhex(x) for x in sys.argv[1:4]]
    topic = sys.argv[4]
    s = cose.Sealer(kid, key, iv)
    sample = {"hr": 71, "spo2": 97, "bp_sys": 121, "bp_dia": 79, "temp": 36.8,
              "pump": {"state": "running", "rate": 12.5, "vtbi": 250, "infused": 3.25,
                       "alarms": ["AIR"]}}
    for seq in (1, 2, 255, 256, 65537):
        rec = records.telemetry_record(sample, seq, 1764489600 + seq)
        print(s.seal(seq, cbor.dumps(rec), topic).hex())
""")


@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_device_sealed_records_open_with_pycose_and_the_collector(tmp_path, runtime):
    """Cross-check: agent/telemetry/cose.py (the device side) against two host
    implementations, on CPython and on the real MicroPython VM."""
    pki = FleetPKI(tmp_path / "work")
    pki.init()
    pki.issue("pump-7", "pump-v2")
    tk = pycose_usable_key(pki, "pump-7")
    topic = "medsentry/pump-7/telemetry"
    script = tmp_path / "seal.py"
    script.write_text(DEVICE_SCRIPT)
    args = [tk.kid.hex(), tk.key.hex(), tk.base_iv.hex(), topic]
    proc = mpvm.run_on(runtime, script, *args, paths=[REPO], timeout=60)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    msgs = [bytes.fromhex(line) for line in proc.stdout.split()]
    assert len(msgs) == 5

    for m in msgs:  # pycose, independent of both our implementations
        msg = CoseMessage.decode(m)
        msg.key = SymmetricKey(k=tk.key, optional_params={"BASE_IV": tk.base_iv})
        msg.external_aad = topic.encode()
        rec = cbor2.loads(msg.decrypt())
        assert rec["hr"] == 71 and rec["pump"]["alarms"] == ["AIR"]

    db = FleetDB(tmp_path / "fleet.db")
    ing = Ingestor(pki, db)
    outcomes = [ing.handle(topic, m).kind for m in msgs]
    assert outcomes == ["accepted"] * 5
    assert db.seqs("pump-7") == [1, 2, 255, 256, 65537]
    assert db.missing("pump-7") == [(3, 254), (257, 65536)]
    assert ing.handle(topic, msgs[0]).kind == "replayed"   # 65537 - 1 >= window
    assert ing.handle(topic, msgs[-1]).kind == "duplicate"
    assert ing.handle("medsentry/pump-7/status", msgs[-1]).kind == "forged"  # AAD binds the topic
    db.close()


@pytest.fixture(scope="module")
def fuzz_ingestor(tmp_path_factory):
    wd = tmp_path_factory.mktemp("fuzz")
    pki = FleetPKI(wd)
    pki.init()
    pki.issue("pump-f", "pump-v2")
    db = FleetDB(wd / "fleet.db")
    tk = pki.device("pump-f").active_key()
    good = cose.seal(cbor2.dumps(record(1)), key=tk.key, base_iv=tk.base_iv, kid=tk.kid, seq=1,
                     topic="medsentry/pump-f/telemetry")
    yield Ingestor(pki, db), db, good
    db.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_messages_never_crash_and_are_never_stored(fuzz_ingestor, data):
    ing, db, good = fuzz_ingestor
    choice = data.draw(st.integers(0, 2))
    if choice == 0:
        payload = data.draw(st.binary(max_size=1100))
    elif choice == 1:  # flip bytes of a valid message
        b = bytearray(good)
        for i in data.draw(st.lists(st.integers(0, len(b) - 1), min_size=1, max_size=4)):
            b[i] ^= data.draw(st.integers(1, 255))
        payload = bytes(b)
    else:  # cut or extend a valid message
        n = data.draw(st.integers(0, len(good) + 8))
        payload = (good + data.draw(st.binary(min_size=8, max_size=8)))[:n]
    topic = data.draw(st.sampled_from(["medsentry/pump-f/telemetry", "medsentry/pump-f/status",
                                       "medsentry/other/telemetry", "x/y"]))
    before = db.seqs("pump-f")
    out = ing.handle(topic, payload)
    if payload == good and topic == "medsentry/pump-f/telemetry":
        assert out.kind in ("accepted", "duplicate")
    else:
        assert out.kind in ("forged", "malformed", "unknown_kid", "wrong_device", "ignored", "replayed",
                            "status_unsealed"), out
        assert db.seqs("pump-f") == before
