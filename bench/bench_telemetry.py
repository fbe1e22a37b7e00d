"""Telemetry benchmarks (issue 6). One line per figure: figure, anchor measured in
the same run, ratio.

1. Sealing cost per record on the MicroPython VM (agent/telemetry/cose.py, AES-CCM on
   cryptolib) vs raw AES-ECB of the same number of AES blocks on the same VM.
2. Heap allocated per seal on the VM (gc.mem_alloc delta, gc disabled) and the VM's
   free heap after loading the telemetry modules under the 256 KiB cap.
3. Bytes of overhead per sealed record vs the plain CBOR record.
4. TLS connect time (mutual TLS + MQTT CONNECT/CONNACK) of the device on the VM to a
   real Mosquitto vs a CPython ssl client doing the same against the same broker.
5. The agent's telemetry pipeline (agent/telemetry/pipeline.py, via
   tests/device/data/telemetry/vm_agent.py) on the VM against the same broker,
   sampling as fast as it can: time per record sampled, sealed, queued on flash,
   published QoS 1 and acknowledged, vs sealing alone; free heap at the end.

Run: .venv/bin/python bench/bench_telemetry.py
"""
from __future__ import annotations

import json
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


from host_tools import mpvm  # noqa: E402
from host_tools.broker import Broker  # noqa: E402
from host_tools.pki import FleetPKI  # noqa: E402
from tests.e2e.test_telemetry_device_mqtt import device_config, start_vm, vm_result  # noqa: E402

N_SEAL = 2000
N_CONNECT = 10
PIPELINE_MS = 3000

VM_SEAL = r"""
import gc, time, binascii
from agent.telemetry import cose, records
from agent.telemetry.aes_ccm import AESCCM
import cryptolib
N = %d
sample = {"hr": 72, "spo2": 98, "bp_sys": 118, "bp_dia": 76, "temp": 36.8,
          "pump": {"state": "running", "rate": 25.0, "vtbi": 100.0, "infused": 12.5, "alarms": []}}
topic = "medsentry/pump-0001/telemetry"
s = cose.Sealer(b"k" * 8, bytes(range(16)), bytes(range(1, 14)))
pt = records.encode(records.telemetry_record(sample, 1000, 1764489600))
msg = s.seal(1000, pt, topic)
aad = cose.make_aad(topic)
# AES block operations CCM does for this record: CBC-MAC over B0 + AAD + payload,
# CTR over A0 + payload.
pad = lambda n: (n + 15) // 16
blocks = (1 + pad(2 + len(aad)) + pad(len(pt))) + (1 + pad(len(pt)))
gc.collect()
t0 = time.ticks_us()
for i in range(N):
    s.seal(1000 + i, pt, topic)
t_seal = time.ticks_diff(time.ticks_us(), t0) / N
ecb = cryptolib.aes(bytes(range(16)), 1)
buf = bytes(16)
t0 = time.ticks_us()
for i in range(N):
    for j in range(blocks):
        ecb.encrypt(buf)
t_ecb = time.ticks_diff(time.ticks_us(), t0) / N
# Same bytes as one ECB call per record (the best case for the same work).
allb = bytes(16 * blocks)
t0 = time.ticks_us()
for i in range(N):
    ecb.encrypt(allb)
t_ecb1 = time.ticks_diff(time.ticks_us(), t0) / N
gc.collect()
gc.disable()
a0 = gc.mem_alloc()
s.seal(5000, pt, topic)
a1 = gc.mem_alloc()
gc.enable()
gc.collect()
print("@@SEAL", t_seal, t_ecb, t_ecb1, blocks, len(pt), len(msg), a1 - a0, gc.mem_free())
""" % N_SEAL

VM_CONNECT = r"""
import sys, json, time
from board.compat import asyncio
from agent.telemetry.mqtt import MQTTClient, TLSConfig
with open(sys.argv[1]) as f:
    cfg = json.load(f)
def rd(p):
    with open(p, "rb") as f:
        return f.read()
tls = TLSConfig(rd(cfg["cert"]), rd(cfg["key_der"]), rd(cfg["ca"]), cfg["host"])
async def go():
    times = []
    for i in range(cfg["n"]):
        c = MQTTClient(cfg["device_id"], cfg["host"], cfg["port"], tls=tls, keepalive=10, clean_session=True)
        t0 = time.ticks_us()
        await c.connect()
        times.append(time.ticks_diff(time.ticks_us(), t0) / 1000)
        await c.disconnect()
    return times
print("@@CONNECT " + json.dumps(asyncio.run(go())))
"""


def run_vm(script_text: str, tmp: Path, *args: str) -> str:
    script = tmp / "bench_vm.py"
    script.write_text(script_text)
    proc = mpvm.run_script(script, *args, paths=[REPO], heap="256k", timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"VM failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def cpython_seal_us(pt: bytes) -> float:
    from agent.telemetry import cose

    s = cose.Sealer(b"k" * 8, bytes(range(16)), bytes(range(1, 14)))
    t0 = time.perf_counter()
    for i in range(N_SEAL):
        s.seal(1000 + i, pt, "medsentry/pump-0001/telemetry")
    return (time.perf_counter() - t0) / N_SEAL * 1e6


def mqtt_connect_packet(client_id: str) -> bytes:
    from agent.telemetry.mqtt.codec import encode_connect

    return encode_connect(client_id, 10, True)


def cpython_connect_ms(host: str, port: int, ident, n: int) -> list[float]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(ident.ca))
    ctx.load_cert_chain(str(ident.cert), str(ident.key))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        with socket.create_connection((host, port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(mqtt_connect_packet("bench-cpython"))
                ack = tls.recv(4)
                assert ack[:1] == b"\x20" and ack[3:4] == b"\x00", ack
                times.append((time.perf_counter() - t0) * 1000)
                tls.sendall(b"\xe0\x00")
    return times


def pipeline_run(pki: FleetPKI, broker: Broker, out: Path) -> dict:
    """vm_agent.py (the agent's telemetry pipeline) on the VM, sampling every 1 ms for
    PIPELINE_MS, then delivering until the queue is empty; its @@RESULT map."""
    pki.issue("bench-pipe", "pump-v2")
    cfg = device_config(pki, "bench-pipe", broker.host, broker.port, out, period_ms=1, duration_ms=PIPELINE_MS,
                        drain_ms=60000, keepalive_s=10, status_every_s=60)
    res = vm_result(start_vm(cfg), 120)
    if res["queued"] or res["connects"] != 1:
        raise SystemExit(f"pipeline run did not deliver everything: {res}")
    return res


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as d:
        tmp = Path(d)
        # 1-3: sealing on the VM
        out = run_vm(VM_SEAL, tmp)
        line = [l for l in out.splitlines() if l.startswith("@@SEAL")][0].split()[1:]
        t_seal, t_ecb, t_ecb1 = float(line[0]), float(line[1]), float(line[2])
        blocks, pt_len, msg_len, alloc, free = (int(x) for x in line[3:])
        print(f"seal_per_record_vm_us={t_seal:.1f}  anchor=raw_aes_ecb_{blocks}_blocks_vm_us={t_ecb:.1f}  "
              f"ratio={t_seal / t_ecb:.2f}")
        print(f"seal_per_record_vm_us={t_seal:.1f}  anchor=one_ecb_call_{blocks}_blocks_vm_us={t_ecb1:.1f}  "
              f"ratio={t_seal / t_ecb1:.2f}")
        from agent.telemetry import records

        sample = {"hr": 72, "spo2": 98, "bp_sys": 118, "bp_dia": 76, "temp": 36.8,
                  "pump": {"state": "running", "rate": 25.0, "vtbi": 100.0, "infused": 12.5, "alarms": []}}
        pt = records.encode(records.telemetry_record(sample, 1000, 1764489600))
        t_cpy = cpython_seal_us(pt)
        print(f"seal_per_record_vm_us={t_seal:.1f}  anchor=same_code_cpython_us={t_cpy:.1f}  "
              f"ratio={t_seal / t_cpy:.2f}")
        print(f"heap_alloc_per_seal_vm_bytes={alloc}  anchor=sealed_record_bytes={msg_len}  "
              f"ratio={alloc / msg_len:.2f}  (free heap after import+seal: {free} of 262144)")
        print(f"overhead_per_record_bytes={msg_len - pt_len}  anchor=plain_cbor_record_bytes={pt_len}  "
              f"ratio={(msg_len - pt_len) / pt_len:.3f}")

        # 4: TLS connect, VM vs CPython, same broker
        pki = FleetPKI(tmp / "work")
        pki.init()
        pki.issue("bench-dev", "pump-v2")
        ident = pki.device_identity("bench-dev")
        with Broker(pki, tmp / "broker") as broker:
            cfg = device_config(pki, "bench-dev", broker.host, broker.port, tmp / "dev", n=N_CONNECT)
            out = run_vm(VM_CONNECT, tmp, str(cfg))
            vm_times = json.loads([l for l in out.splitlines() if l.startswith("@@CONNECT ")][0][10:])
            cpy_times = cpython_connect_ms(broker.host, broker.port, ident, N_CONNECT)
            pipe = pipeline_run(pki, broker, tmp / "pipe")
        vm_med = statistics.median(vm_times)
        cpy_med = statistics.median(cpy_times)
        print(f"tls_connect_vm_ms={vm_med:.1f}  anchor=tls_connect_cpython_ssl_ms={cpy_med:.1f}  "
              f"ratio={vm_med / cpy_med:.2f}  (median of {N_CONNECT}; mutual TLS ECDSA P-256 + CONNECT/CONNACK)")
        # 5: the real pipeline end to end
        n = pipe["stats"]["acked"]
        per_rec_us = pipe["elapsed_ms"] * 1000 / n
        print(f"pipeline_per_acked_record_vm_us={per_rec_us:.0f}  anchor=seal_per_record_vm_us={t_seal:.1f}  "
              f"ratio={per_rec_us / t_seal:.1f}  ({n} records acked in {pipe['elapsed_ms']} ms incl. drain; "
              f"free heap {pipe['mem_free_start']} -> {pipe['mem_free_end']} of 262144)")


if __name__ == "__main__":
    main()
