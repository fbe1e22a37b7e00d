"""The device telemetry pipeline on the MicroPython VM against a REAL Mosquitto.

agent/telemetry (sampler -> COSE seal -> flash queue -> MQTT QoS 1 over mutual TLS)
runs in `micropython -X heapsize=256k` (tests/device/data/telemetry/vm_agent.py) and
talks to Mosquitto started with the fleet PKI (host_tools.pki + host_tools.broker via
tests/e2e/broker_fixtures.py). A paho subscriber with the `collector` identity and a
persistent session receives everything; each message is opened here with
cryptography's AESCCM + cbor2 (independent of the device code).

Scenario (one broker, one flash directory):
  run A  streams at 20 Hz; the broker is SIGKILLed mid-stream and restarted;
  run B  samples while the broker is down (records pile up in the flash queue),
         then the VM is SIGKILLed (power cut);
  run C  boots on the same flash with the broker back: delivers B's backlog, its
         own records, and declares the reserved-but-unused sequence range.
Checked: every sequence number 1..max is either received or declared skipped (no
loss), no (kid, seq) is ever used for two different messages (no nonce reuse), the
first arrivals are in order, duplicates are byte-identical redeliveries.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from host_tools import mpvm
from host_tools.collector import tls_client
from tests.e2e.broker_fixtures import fleet  # noqa: F401 - the pytest fixture

REPO = Path(__file__).resolve().parents[2]
VM_AGENT = REPO / "tests/device/data/telemetry/vm_agent.py"
DEVICE = "pump-e2e"
LAST_WILL = bytes.fromhex("a1657374617465676f66666c696e65")


# ----------------------------------------------------------------- helpers (also used by bench)
def device_config(pki, device_id: str, host: str, port: int, out: Path, **over) -> Path:
    """Write the device's identity as DER (as provisioning puts it on flash) and a
    vm_agent config; returns the config path."""
    ident = pki.device_identity(device_id)
    tk = pki.device(device_id).active_key()
    out.mkdir(parents=True, exist_ok=True)
    cert = x509.load_pem_x509_certificate(ident.cert.read_bytes())
    key = serialization.load_pem_private_key(ident.key.read_bytes(), None)
    ca = x509.load_pem_x509_certificate(ident.ca.read_bytes())
    (out / "cert.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    (out / "key.der").write_bytes(key.private_bytes(serialization.Encoding.DER,
                                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                                    serialization.NoEncryption()))
    (out / "ca.der").write_bytes(ca.public_bytes(serialization.Encoding.DER))
    (out / "flash").mkdir(exist_ok=True)
    cfg = {"device_id": device_id, "host": host, "port": port, "server_hostname": host,
           "cert": str(out / "cert.der"), "key_der": str(out / "key.der"), "ca": str(out / "ca.der"),
           "kid": tk.kid.hex(), "key": tk.key.hex(), "base_iv": tk.base_iv.hex(),
           "data_dir": str(out / "flash"), "period_ms": 1000, "duration_ms": 3000, "drain_ms": 10000,
           "keepalive_s": 10, "backoff_base_ms": 100, "backoff_max_ms": 1000}
    cfg.update(over)
    path = out / "config.json"
    path.write_text(json.dumps(cfg))
    return path


def start_vm(cfg_path: Path, heap: str = "256k") -> subprocess.Popen:
    return subprocess.Popen(mpvm.vm_command(VM_AGENT, str(cfg_path), heap=heap),
                            env=mpvm.vm_env([REPO]), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_until(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.05)


def vm_result(proc: subprocess.Popen, timeout: float) -> dict:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
        raise AssertionError(f"VM agent still running after {timeout}s:\n{out[-3000:]}") from None
    lines = [l for l in out.splitlines() if l.startswith("@@RESULT ")]
    assert proc.returncode == 0 and lines, f"VM agent failed (exit {proc.returncode}):\n{out[-3000:]}"
    return json.loads(lines[-1][len("@@RESULT "):])


def open_sealed(payload: bytes, topic: str, key: bytes, base_iv: bytes, kid: bytes) -> tuple[int, dict]:
    """Independent opener: cbor2 + cryptography AESCCM (SEALING.md 3-4)."""
    msg = cbor2.loads(payload)
    assert isinstance(msg, cbor2.CBORTag) and msg.tag == 16
    prot, unprot, ct = msg.value
    assert prot == b"\xa1\x01\x0a" and unprot[4] == kid
    piv = unprot[6]
    nonce = bytes(a ^ b for a, b in zip(base_iv, bytes(13 - len(piv)) + piv))
    aad = cbor2.dumps(["Encrypt0", prot, topic.encode()])
    rec = cbor2.loads(AESCCM(key, tag_length=8).decrypt(nonce, ct, aad))
    seq = int.from_bytes(piv, "big")
    assert rec["seq"] == seq
    return seq, rec


class Sink:
    """paho subscriber (identity collector-b), persistent session, resubscribes on
    every (re)connect; keeps arrival order."""

    def __init__(self, fleet, device_id: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = tls_client(fleet.pki.client_identity("collector-b"), "tele-e2e-sink", clean_session=False)
        self.client.reconnect_delay_set(0.1, 0.5)
        topics = [(f"medsentry/{device_id}/telemetry", 1), (f"medsentry/{device_id}/status", 1)]

        def on_connect(c, u, flags, reason, props=None):
            if not reason.is_failure:
                c.subscribe(topics)

        def on_subscribe(c, u, mid, reasons, props=None):
            self.subscribed.set()

        def on_message(c, u, msg):
            with self._lock:
                self.messages.append((msg.topic, bytes(msg.payload)))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect(fleet.broker.host, fleet.broker.port, keepalive=5)
        self.client.loop_start()
        assert self.subscribed.wait(10), "sink could not subscribe"

    def snapshot(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def analyse(messages, key, base_iv, kid):
    """-> (first-arrival seq list, {seq: payload}, skipped set, duplicates, wills)."""
    order, by_seq, skipped = [], {}, set()
    dups = wills = 0
    for topic, payload in messages:
        if payload == LAST_WILL or payload == b"":
            wills += 1  # the last will, or the device clearing it after a connect
            continue
        seq, rec = open_sealed(payload, topic, key, base_iv, kid)
        if seq in by_seq:
            # Same number twice: must be a byte-identical redelivery, never a
            # second message under the same nonce.
            assert by_seq[seq] == payload, f"nonce reuse: seq {seq} sealed twice with different content"
            dups += 1
            continue
        by_seq[seq] = payload
        order.append(seq)
        if "skip" in rec:
            lo, hi = rec["skip"]
            assert lo <= hi < seq
            skipped.update(range(lo, hi + 1))
    return order, by_seq, skipped, dups, wills


# ----------------------------------------------------------------- test
FLEET_DEVICES = [(DEVICE, "pump-v2")]
FLEET_PERSISTENCE = True


@pytest.mark.timeout(150)
def test_device_streams_through_broker_kill_and_power_cut(fleet, tmp_path):
    tk = fleet.pki.device(DEVICE).active_key()
    broker = fleet.broker
    sink = Sink(fleet, DEVICE)
    procs: list[subprocess.Popen] = []
    try:
        common = dict(period_ms=50, keepalive_s=5, status_every_s=2)
        # -- run A: stream, broker SIGKILLed mid-stream, back after ~1.5 s
        cfg = device_config(fleet.pki, DEVICE, broker.host, broker.port, tmp_path / "dev",
                            duration_ms=6000, drain_ms=20000, **common)
        a = start_vm(cfg)
        procs.append(a)
        operator = fleet.client("operator")
        wait_until(lambda: re.search(rf"\b{DEVICE} [01] medsentry/{DEVICE}/cmd\b", broker.log_text()), 20,
                   "the device subscribed to its cmd topic")
        for i in range(3):  # commands reach the device's cmd subscription
            fleet.publish(operator, f"medsentry/{DEVICE}/cmd", b"cmd%d" % i)
        streamed = len(sink.snapshot())
        wait_until(lambda: len(sink.snapshot()) >= streamed + 10, 20, "the stream goes on after the commands")
        broker.kill()  # mid-stream
        time.sleep(1.5)  # the outage itself: the broker stays away this long
        broker.start()
        res_a = vm_result(a, 60)
        assert res_a["queued"] == 0, res_a
        assert res_a["connects"] >= 2 and res_a["failures"] >= 1, res_a
        assert res_a["stats"]["sample_errors"] == 0 and res_a["stats"]["store_errors"] == 0
        assert res_a["skip"] is None and res_a["first_seq"] == 1
        assert res_a["stats"]["commands"] >= 3, res_a
        sealed_a = res_a["next_seq"] - 1

        # -- run B: broker down, records pile up on flash, then a power cut
        broker.kill()
        cfg = device_config(fleet.pki, DEVICE, broker.host, broker.port, tmp_path / "dev",
                            duration_ms=60000, drain_ms=0, **common)
        b = start_vm(cfg)
        procs.append(b)
        time.sleep(2.5)
        os.killpg(b.pid, signal.SIGKILL)  # power cut: no chance to sync anything
        b.wait(10)

        # -- run C: same flash, broker back
        broker.start()
        cfg = device_config(fleet.pki, DEVICE, broker.host, broker.port, tmp_path / "dev",
                            duration_ms=2000, drain_ms=20000, **common)
        c = start_vm(cfg)
        procs.append(c)
        res_c = vm_result(c, 60)
        assert res_c["queued"] == 0, res_c
        # C started above B's reservation: it declared the unused part of it.
        assert res_c["first_seq"] > sealed_a + 1
        assert res_c["skip"] is not None and res_c["skip"][1] == res_c["first_seq"] - 1
        max_seq = res_c["next_seq"] - 1

        # -- everything reached the subscriber
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            order, by_seq, skipped, dups, wills = analyse(sink.snapshot(), tk.key, tk.base_iv, tk.kid)
            if set(range(1, max_seq + 1)) <= set(by_seq) | skipped:
                break
            time.sleep(0.2)
        missing = sorted(set(range(1, max_seq + 1)) - set(by_seq) - skipped)
        assert not missing, f"lost {len(missing)} records: {missing[:20]}"
        assert not (set(by_seq) & set(range(res_c["skip"][0], res_c["skip"][1] + 1))), \
            "a number declared skipped was also used"
        # B's backlog was delivered by C: numbers between A's last and C's reservation
        b_seqs = [s for s in by_seq if sealed_a < s < res_c["skip"][0]]
        assert len(b_seqs) >= 20, f"B's queued records not delivered: {len(b_seqs)}"
        assert order == sorted(order), "first arrivals out of order"
        assert max(by_seq) == max_seq
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        sink.close()


VM_CONNECT = r"""
import sys, json
from board.compat import asyncio
from agent.telemetry.mqtt import MQTTClient, TLSConfig, MQTTTransportError, MQTTProtocolError
with open(sys.argv[1]) as f:
    cfg = json.load(f)
def rd(p):
    with open(p, "rb") as f:
        return f.read()
async def go():
    c = MQTTClient(cfg["device_id"], cfg["host"], cfg["port"], keepalive=5, connect_timeout_ms=5000,
                   tls=TLSConfig(rd(cfg["cert"]), rd(cfg["key_der"]), rd(cfg["ca"]), cfg["server_hostname"]))
    try:
        await c.connect()
        print("@@CONNECT ok")
        await c.disconnect()
    except MQTTTransportError as e:
        print("@@CONNECT transport", repr(e)[:200])
    except MQTTProtocolError as e:
        print("@@CONNECT protocol", repr(e)[:200])
asyncio.run(go())
"""


def _vm_connect(tmp_path: Path, cfg_path: Path) -> str:
    script = tmp_path / "vm_connect.py"
    script.write_text(VM_CONNECT)
    proc = mpvm.run_script(script, str(cfg_path), paths=[REPO], timeout=30)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("@@CONNECT ")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    return lines[-1][len("@@CONNECT "):]


def test_device_verifies_the_broker(fleet, tmp_path):
    """Mutual TLS from the VM: the right CA + host name connects; a wrong host name or
    a foreign CA is refused by the device (MQTTTransportError), never connected."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from host_tools.pki import certs
    from datetime import datetime, timedelta, timezone

    b = fleet.broker
    good = device_config(fleet.pki, DEVICE, b.host, b.port, tmp_path / "good")
    assert _vm_connect(tmp_path, good) == "ok"
    wrong_name = device_config(fleet.pki, DEVICE, b.host, b.port, tmp_path / "name", server_hostname="evil.example")
    assert _vm_connect(tmp_path, wrong_name).startswith("transport")
    foreign = device_config(fleet.pki, DEVICE, b.host, b.port, tmp_path / "ca")
    now = datetime.now(timezone.utc)
    other_ca = certs.make_ca(ec.generate_private_key(ec.SECP256R1()), "other CA", now - timedelta(days=1),
                             now + timedelta(days=10))
    (tmp_path / "ca" / "ca.der").write_bytes(other_ca.public_bytes(serialization.Encoding.DER))
    assert _vm_connect(tmp_path, foreign).startswith("transport")


def test_same_device_code_on_cpython_transport(fleet, tmp_path):
    """The identical agent telemetry pipeline (vm_agent.py) on CPython (the transport
    shim's CPython branch: ssl with the DER identity) delivers to the same broker."""
    import sys

    tk = fleet.pki.device(DEVICE).active_key()
    sink = Sink(fleet, DEVICE)
    try:
        cfg = device_config(fleet.pki, DEVICE, fleet.broker.host, fleet.broker.port, tmp_path / "cpy",
                            period_ms=50, duration_ms=1500, drain_ms=10000, keepalive_s=5)
        proc = subprocess.Popen([sys.executable, str(VM_AGENT), str(cfg)], env={**os.environ, "PYTHONPATH": str(REPO)},
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        res = vm_result(proc, 60)
        assert res["connects"] == 1 and res["failures"] == 0, res["last_error"]
        assert res["queued"] == 0
        n = res["next_seq"] - 1
        assert n >= 20
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            order, by_seq, skipped, dups, wills = analyse(sink.snapshot(), tk.key, tk.base_iv, tk.kid)
            if len(by_seq) >= n:
                break
            time.sleep(0.1)
        assert sorted(by_seq) == list(range(1, n + 1))
        assert order == sorted(order)
    finally:
        sink.close()


@pytest.mark.timeout(90)
def test_vm_device_feeds_the_host_collector(fleet, tmp_path):
    """Contract check with the real collector (host_tools.collector, SEALING.md §6):
    everything the VM seals -- telemetry, sealed status, the reboot "skip" -- is
    accepted; nothing is counted as forged/malformed/replayed."""
    from host_tools.collector.outcomes import REJECTIONS

    col = fleet.collector()
    b = fleet.broker
    cfg = device_config(fleet.pki, DEVICE, b.host, b.port, tmp_path / "dev", period_ms=50,
                        duration_ms=1500, drain_ms=10000, seq_block=16, status_every_s=1)
    res1 = vm_result(start_vm(cfg), 60)
    res2 = vm_result(start_vm(cfg), 60)  # reboot: declares the unused reserved range
    assert res1["queued"] == 0 and res2["queued"] == 0
    assert res2["skip"] is not None
    sealed = (res1["next_seq"] - 1 - (res1["first_seq"] - 1)) + (res2["next_seq"] - res2["first_seq"])
    assert col.wait_for(lambda s: s.get("accepted", 0) >= sealed, 15.0), col.stats
    stats = col.stats
    assert stats.get("accepted", 0) == sealed, stats
    assert not any(stats.get(k, 0) for k in REJECTIONS), stats
