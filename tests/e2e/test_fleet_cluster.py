"""Issue 15: the fleet broker cluster (3 RabbitMQ nodes, MQTT plugin), real processes.

The cluster starts ONCE for this module (~40 s on 2 cores) and is stopped at its end.
Attacks repeat those of test_broker_acl / test_broker_auth against the cluster, plus
the RabbitMQ-specific one: a user name/password in CONNECT must not override the
client certificate (RabbitMQ prefers them; /work/shared/NOTES.md).
"""
from __future__ import annotations

import ssl
import threading
import time
import uuid

import cbor2
import paho.mqtt.client as mqtt
import pytest

from host_tools.broker.cluster import RabbitCluster
from host_tools.collector import FleetDB
from host_tools.collector.amqp import AmqpCollector
from host_tools.collector.cose import seal
from host_tools.pki import FleetPKI

DEVICES = ("pump-1", "pump-2", "pump-3")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("fleet")
    pki = FleetPKI(work)
    pki.init()
    for dev in DEVICES:
        pki.issue(dev, "pump-v2")
    pki.issue_client("collector-b")
    c = RabbitCluster(pki, work / "cluster", nodes=3)
    c.start()
    yield c
    c.stop()


def connect(cluster, name, node=0, *, username=None, password=None, client_id=None, clean=True,
            timeout=10.0):
    """(client, None) when CONNACK success, else (None, reason)."""
    pki = cluster.pki
    ident = pki.device_identity(name) if name in DEVICES else pki.client_identity(name)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"{name}",
                    clean_session=clean)
    c.tls_set(ca_certs=str(ident.ca), certfile=str(ident.cert), keyfile=str(ident.key),
              cert_reqs=ssl.CERT_REQUIRED)
    if username is not None:
        c.username_pw_set(username, password)
    res: dict = {}
    ev = threading.Event()
    c.on_connect = lambda cl, u, f, rc, p=None: (res.setdefault("rc", rc), ev.set())
    c.on_disconnect = lambda cl, u, f, rc, p=None: (res.setdefault("gone", rc), ev.set())
    host, port = cluster.endpoints[node]
    try:
        c.connect(host, port, keepalive=30)
    except (OSError, ssl.SSLError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    c.loop_start()
    ok = ev.wait(timeout)
    rc = res.get("rc")
    if ok and rc is not None and not rc.is_failure and "gone" not in res:
        return c, None
    c.loop_stop()
    return None, str(res or "timeout")


def sealed(pki, dev, seq, topic=None):
    tk = pki.device(dev).active_key()
    topic = topic or f"medsentry/{dev}/telemetry"
    return seal(cbor2.dumps({"t": 1764489600 + seq, "seq": seq, "hr": 70}), key=tk.key,
                base_iv=tk.base_iv, kid=tk.kid, seq=seq, topic=topic)


@pytest.mark.parametrize("username,password", [
    ("guest", "guest"), ("collector", ""), ("collector", "x"), ("pump-2", "pump-2"), ("operator", None)])
def test_password_in_connect_cannot_override_the_certificate(cluster, username, password):
    ok, _ = connect(cluster, "pump-1")  # positive control: the certificate alone
    assert ok is not None
    ok.disconnect()
    ok.loop_stop()
    client, why = connect(cluster, "pump-1", 1, username=username, password=password)
    assert client is None, f"pump-1's certificate logged in as {username!r}"


def test_no_user_has_a_password_and_guest_is_gone(cluster):
    users = cluster.ctl("list_users", "--silent")
    assert "guest" not in users.split()
    import json
    defs = json.loads((cluster.run_dir / "definitions.json").read_text())
    assert all(u["password_hash"] == "" for u in defs["users"])


def test_topic_authorisation_matches_the_acl(cluster, tmp_path):
    pki = cluster.pki
    db = FleetDB(tmp_path / "fleet.db")
    col = AmqpCollector(pki, db, "collector", cluster.amqp_endpoints)
    t = threading.Thread(target=col.run, kwargs={"duration": 60}, daemon=True)
    t.start()
    try:
        # forged topic: pump-1 publishes as pump-2 -> connection dropped, nothing stored
        c, _ = connect(cluster, "pump-1")
        c.publish("medsentry/pump-2/telemetry", sealed(pki, "pump-2", 1), qos=1)
        time.sleep(1.0)
        assert not c.is_connected()
        c.loop_stop()
        # subscribing to another device's commands -> dropped
        c, _ = connect(cluster, "pump-1", 2)
        c.subscribe("medsentry/pump-2/cmd", 1)
        time.sleep(1.0)
        assert not c.is_connected()
        c.loop_stop()
        # positive control: own topic, after the forged one (ordering through one queue)
        c, _ = connect(cluster, "pump-1", 1)
        c.publish("medsentry/pump-1/telemetry", sealed(pki, "pump-1", 1), qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and db.seqs("pump-1") != [1]:
            time.sleep(0.1)
        assert db.seqs("pump-1") == [1]
        assert db.seqs("pump-2") == [] and db.counters().get("wrong_device", 0) == 0
        # own commands: the operator publishes, the device receives
        got = threading.Event()
        c.on_message = lambda cl, u, m: got.set() if m.topic == "medsentry/pump-1/cmd" else None
        c.subscribe("medsentry/pump-1/cmd", 1)
        time.sleep(0.5)
        op, why = connect(cluster, "operator", 2)
        assert op is not None, why
        op.publish("medsentry/pump-1/cmd", b"reboot", qos=1).wait_for_publish(10)
        assert got.wait(10) and c.is_connected()
        for cl in (c, op):
            cl.disconnect()
            cl.loop_stop()
    finally:
        col.stop()
        t.join(30)
        db.close()


def test_revoked_certificate_is_refused_without_restart(cluster):
    ok, why = connect(cluster, "pump-3", 2)
    assert ok is not None, why
    ok.disconnect()
    ok.loop_stop()
    cluster.pki.revoke("pump-3")
    cluster.refresh_crl()
    for node in range(3):
        client, why = connect(cluster, "pump-3", node)
        assert client is None, f"revoked pump-3 connected to node {node}"


@pytest.mark.xfail(strict=True, reason="RabbitMQ 3.10 has no client-id-from-certificate option: "
                   "a device certificate using another device's client id disconnects it (known "
                   "residual, host_tools/broker/NOTES.md; its own subscription is then refused)")
def test_client_id_of_another_device_is_not_a_takeover(cluster):
    """pump-1's certificate asks for pump-2's client id with a persistent session:
    the session queue is pump-2's, which pump-1 may not configure -> refused; the
    real pump-2 should stay connected (it does not on RabbitMQ 3.10: xfail)."""
    real, why = connect(cluster, "pump-2", 0, clean=False)
    assert real is not None, why
    real.subscribe("medsentry/pump-2/cmd", 1)
    time.sleep(1.0)
    assert real.is_connected()
    attacker, _ = connect(cluster, "pump-1", 1, client_id="pump-2", clean=False)
    if attacker is not None:
        attacker.subscribe("medsentry/pump-2/cmd", 1)
        time.sleep(1.0)
        assert not attacker.is_connected()
        attacker.loop_stop()
    time.sleep(1.0)
    assert real.is_connected(), "the real pump-2 was kicked off"
    real.disconnect()
    real.loop_stop()
