"""Inbound MQTT on the device (the path signed commands will take): the device's
MQTTClient in `micropython -X heapsize=256k` subscribes over mutual TLS to a REAL
Mosquitto (fleet PKI and ACL from host_tools, started by broker_fixtures) and
receives what the operator publishes on its cmd topic, QoS 0 and QoS 1.

Checked: SUBACK grants QoS 1 on medsentry/<id>/cmd; another device's cmd topic is
never delivered (Mosquitto 2.0.11 answers that SUBSCRIBE with a grant and applies
the read ACL at delivery; a 0x80 refusal would raise MQTTRefused); QoS 0 and
QoS 1 messages arrive with their QoS, in order; an oversized command (above the
client's 2 KiB packet bound) is skipped and counted, later ones still arrive; every
QoS 1 message was acknowledged (PUBACK): a reconnect on the same persistent
session gets nothing redelivered.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from host_tools import mpvm
from tests.e2e.broker_fixtures import running_fleet
from tests.e2e.test_telemetry_device_mqtt import VM_AGENT, device_config

REPO = Path(__file__).resolve().parents[2]
DEVICE = "pump-cmd"
OTHER = "pump-other"

VM_INBOUND = r"""
import sys, json
from board.compat import asyncio
from agent.telemetry.mqtt import MQTTClient, MQTTRefused, TLSConfig
from vm_agent import identity
cfg = json.load(open(sys.argv[1]))
ident = identity(cfg)
tls = TLSConfig(ident["cert_der"], ident["key_der"], ident["ca_der"], ident["server_hostname"])
dev = cfg["device_id"]
def client():
    return MQTTClient(dev, cfg["host"], cfg["port"], tls=tls, keepalive=10, clean_session=False)
async def collect(c, n, timeout_s):
    got = []
    try:
        while len(got) < n:
            t, p, q, r = await asyncio.wait_for(c.recv(), timeout_s)
            got.append([t, p.decode(), q, r])
    except asyncio.TimeoutError:
        pass
    return got
async def go():
    out = {}
    c = client()
    await c.connect()
    out["granted"] = await c.subscribe("medsentry/%s/cmd" % dev, 1)
    try:
        await c.subscribe("medsentry/%s/cmd" % cfg["other"], 1)
        out["other"] = "granted"
    except MQTTRefused as e:
        out["other"] = "refused"
    print("@@SUBSCRIBED")
    out["first"] = await collect(c, cfg["expect"], 15)
    out["stats"] = c.stats
    out["connected"] = c.connected
    c.close()  # no DISCONNECT: the persistent session stays on the broker
    c2 = client()
    out["session_present"] = await c2.connect()
    out["redelivered"] = await collect(c2, 1, 2)
    await c2.disconnect()
    print("@@RESULT " + json.dumps(out))
asyncio.run(go())
"""


@pytest.fixture
def fleet(tmp_path):
    with running_fleet(tmp_path, devices=[(DEVICE, "pump-v2"), (OTHER, "pump-v2")]) as f:
        yield f


@pytest.mark.timeout(90)
def test_device_subscribes_and_receives_qos0_qos1_over_mutual_tls(fleet, tmp_path):
    b = fleet.broker
    cfg = device_config(fleet.pki, DEVICE, b.host, b.port, tmp_path / "dev", other=OTHER, expect=3)
    script = tmp_path / "vm_inbound.py"
    script.write_text(VM_INBOUND)
    proc = subprocess.Popen(mpvm.vm_command(script, str(cfg), heap="256k"), env=mpvm.vm_env([REPO, VM_AGENT.parent]), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        lines = []
        for line in proc.stdout:  # the VM prints as it goes; pytest's timeout bounds this
            lines.append(line)
            if line.startswith("@@SUBSCRIBED"):
                break
        assert lines and lines[-1].startswith("@@SUBSCRIBED"), "".join(lines)
        op = fleet.client("operator")
        fleet.publish(op, f"medsentry/{OTHER}/cmd", b"not-for-you", qos=1)
        fleet.publish(op, f"medsentry/{DEVICE}/cmd", b"q0", qos=0)
        fleet.publish(op, f"medsentry/{DEVICE}/cmd", b"q1", qos=1)
        fleet.publish(op, f"medsentry/{DEVICE}/cmd", b"x" * 4000, qos=1)  # above the 2 KiB bound
        fleet.publish(op, f"medsentry/{DEVICE}/cmd", b"q1-after", qos=1)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    res_lines = [l for l in out.splitlines() if l.startswith("@@RESULT ")]
    assert proc.returncode == 0 and res_lines, out[-3000:]
    res = json.loads(res_lines[-1][len("@@RESULT "):])
    topic = f"medsentry/{DEVICE}/cmd"
    assert res["granted"] == 1
    assert res["first"] == [[topic, "q0", 0, False], [topic, "q1", 1, False], [topic, "q1-after", 1, False]]
    st = res["stats"]
    assert st["received"] == 4 and st["oversize_dropped"] == 1 and st["inbound_dropped"] == 0, st
    assert res["connected"]
    # Every QoS 1 message (the skipped one too) was acknowledged: nothing comes again.
    assert res["session_present"] is True
    assert res["redelivered"] == []
