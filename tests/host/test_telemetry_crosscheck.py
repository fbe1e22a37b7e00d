"""Records sealed by agent/telemetry/cose.py ON THE MICROPYTHON VM open with
independent implementations: pycose 1.1 (cbor2 < 6) and cryptography's AESCCM;
and a message sealed by pycose opens on the VM."""
from __future__ import annotations

import json
import secrets
from pathlib import Path

import cbor2
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from pycose.algorithms import AESCCM1664128
from pycose.headers import KID, Algorithm, PartialIV
from pycose.keys import SymmetricKey
from pycose.messages import CoseMessage, Enc0Message

from host_tools import mpvm

REPO = Path(__file__).resolve().parents[2]
VECTOR = json.loads((REPO / "host_tools/collector/sealing_vector.json").read_text())

VM_SEAL = r"""
import sys, json, binascii
from agent.telemetry import cose, records
u = binascii.unhexlify
with open(sys.argv[1]) as f:
    job = json.load(f)
out = []
for k in job["keys"]:
    s = cose.Sealer(u(k["kid"]), u(k["key"]), u(k["base_iv"]))
    for item in k["items"]:
        if "plaintext" in item:
            pt = u(item["plaintext"])
        else:
            pt = records.encode(records.telemetry_record(item["sample"], item["seq"], item["t"]))
        out.append(binascii.hexlify(s.seal(item["seq"], pt, item["topic"])).decode())
for o in job.get("open", []):
    s = cose.Sealer(u(o["kid"]), u(o["key"]), u(o["base_iv"]))
    seq, pt = s.open(u(o["message"]), o["topic"])
    out.append([seq, binascii.hexlify(pt).decode()])
print("@@OUT " + json.dumps(out))
"""


def run_vm(tmp_path: Path, job: dict) -> list:
    script = tmp_path / "vm_seal.py"
    script.write_text(VM_SEAL)
    # (the VM's argv cannot carry long strings: pass the job in a file)
    (tmp_path / "job.json").write_text(json.dumps(job))
    proc = mpvm.run_script(script, str(tmp_path / "job.json"), paths=[REPO], heap="256k", timeout=60)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("@@OUT ")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    return json.loads(lines[-1][6:])


def new_key() -> dict:
    base_iv = bytes([secrets.randbelow(255) + 1]) + secrets.token_bytes(12)  # pycose: no leading 0x00
    return {"kid": secrets.token_bytes(8).hex(), "key": secrets.token_bytes(16).hex(), "base_iv": base_iv.hex()}


SAMPLE = {"hr": 72, "spo2": 98, "bp_sys": 118, "bp_dia": 76, "temp": 36.8,
          "pump": {"state": "alarm", "rate": 0.0, "vtbi": 50.5, "infused": 49.9, "alarms": ["OCCLUSION", "AIR"]}}


def pycose_open(msg: bytes, key: dict, topic: str) -> bytes:
    dec = CoseMessage.decode(msg)
    assert isinstance(dec, Enc0Message)
    assert dec.phdr[Algorithm] is AESCCM1664128 or dec.phdr[Algorithm] == AESCCM1664128
    assert dec.uhdr[KID] == bytes.fromhex(key["kid"])
    dec.key = SymmetricKey(k=bytes.fromhex(key["key"]), optional_params={"BASE_IV": bytes.fromhex(key["base_iv"])})
    dec.external_aad = topic.encode()
    return dec.decrypt()


def aesccm_open(msg: bytes, key: dict, topic: str) -> tuple[int, bytes]:
    tag = cbor2.loads(msg)
    assert tag.tag == 16
    prot, unprot, ct = tag.value
    piv = unprot[6]
    base_iv = bytes.fromhex(key["base_iv"])
    nonce = bytes(a ^ b for a, b in zip(base_iv, bytes(13 - len(piv)) + piv))
    aad = cbor2.dumps(["Encrypt0", prot, topic.encode()])
    return int.from_bytes(piv, "big"), AESCCM(bytes.fromhex(key["key"]), tag_length=8).decrypt(nonce, ct, aad)


def test_vm_reproduces_the_worked_example(tmp_path):
    v = VECTOR
    job = {"keys": [{"kid": v["kid"], "key": v["key"], "base_iv": v["base_iv"],
                     "items": [{"plaintext": v["plaintext"], "seq": v["seq"], "topic": v["topic"]}]}]}
    assert run_vm(tmp_path, job) == [v["message"]]


def test_vm_sealed_records_open_with_pycose_and_aesccm(tmp_path):
    k1, k2 = new_key(), new_key()
    topic_t = "medsentry/pump-7/telemetry"
    topic_s = "medsentry/pump-7/status"
    seqs1 = [1, 2, 255, 256, 65535, 65536, 16777216, (1 << 40) - 2]
    items1 = [{"sample": SAMPLE, "seq": s, "t": 1764489600 + s, "topic": topic_t} for s in seqs1]
    items1.append({"plaintext": cbor2.dumps({"t": 1, "seq": 300, "state": "online"}).hex(), "seq": 300,
                   "topic": topic_s})
    # Key rotation: the second key continues the same sequence.
    items2 = [{"sample": SAMPLE, "seq": (1 << 40) - 1, "t": 1764489601, "topic": topic_t}]
    job = {"keys": [dict(k1, items=items1), dict(k2, items=items2)]}
    out = [bytes.fromhex(h) for h in run_vm(tmp_path, job)]
    assert len(out) == len(items1) + len(items2)
    for msg, item in zip(out, items1):
        pt = pycose_open(msg, k1, item["topic"])
        seq, pt2 = aesccm_open(msg, k1, item["topic"])
        assert pt == pt2 and seq == item["seq"]
        rec = cbor2.loads(pt)
        assert rec["seq"] == item["seq"]
        if "sample" in item:
            assert rec["pump"]["alarms"] == ["OCCLUSION", "AIR"] and rec["temp"] == 36.8
    rotated = out[-1]
    assert cbor2.loads(rotated).value[1][4] == bytes.fromhex(k2["kid"])
    assert cbor2.loads(pycose_open(rotated, k2, topic_t))["seq"] == (1 << 40) - 1
    # The topic is bound: another device's topic fails with both implementations.
    with pytest.raises(InvalidTag):
        pycose_open(out[0], k1, "medsentry/pump-8/telemetry")
    with pytest.raises(InvalidTag):
        aesccm_open(out[0], k1, topic_s)


def test_pycose_sealed_message_opens_on_the_vm(tmp_path):
    k = new_key()
    topic = "medsentry/pump-7/cmd"
    rec = {"t": 5, "seq": 4242, "state": "online"}
    msg = Enc0Message(phdr={Algorithm: AESCCM1664128},
                      uhdr={KID: bytes.fromhex(k["kid"]), PartialIV: (4242).to_bytes(2, "big")},
                      payload=cbor2.dumps(rec), external_aad=topic.encode())
    msg.key = SymmetricKey(k=bytes.fromhex(k["key"]), optional_params={"BASE_IV": bytes.fromhex(k["base_iv"])})
    enc = msg.encode()
    out = run_vm(tmp_path, {"keys": [], "open": [dict(k, message=enc.hex(), topic=topic)]})
    assert out == [[4242, cbor2.dumps(rec).hex()]]
