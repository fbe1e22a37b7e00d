"""Issue 11 item 1: no certificate can take over another client's MQTT session.

The review's attack: a device certificate connects with client id ``pump-2``
(kicking the real pump-2 off again and again) or ``medsentry-collector`` (wiping
the collector's persistent session, losing records the broker had already
acknowledged to devices). The broker now replaces every client id by the
certificate CN (``use_username_as_clientid``), so each attack below only ever
reaches the attacker's own session. Real Mosquitto, real paho clients.
"""
from __future__ import annotations

import threading

import pytest

from host_tools.collector import Collector, CollectorConfig, FleetDB, tls_client
from host_tools.collector.cose import seal
from tests.e2e.broker_fixtures import fleet, record  # noqa: F401 (fixture)

T2 = "medsentry/pump-2/telemetry"
ROUNDS = 8


def sealed(fleet, seq: int) -> bytes:
    import cbor2

    tk = fleet.pki.device("pump-2").active_key()
    return seal(cbor2.dumps(record(seq)), key=tk.key, base_iv=tk.base_iv, kid=tk.kid, seq=seq, topic=T2)


def counting_disconnects(client) -> list[int]:
    """Count the disconnects the broker inflicts on ``client`` (paho callback)."""
    hits: list[int] = []
    previous = client.on_disconnect

    def on_disconnect(*args, **kw):
        hits.append(1)
        if previous is not None:
            previous(*args, **kw)

    client.on_disconnect = on_disconnect
    return hits


def connect_as(fleet, attacker: str, client_id: str, clean_session: bool = True) -> None:
    """One takeover attempt: connect with ``attacker``'s certificate and a chosen
    client id, then leave. Clean session is what wiped the collector's queue; a
    resumed session (clean_session False) is what discarded its backlog while the
    collector was down (the review's "+58 lost")."""
    c = tls_client(fleet.identity(attacker), client_id, clean_session=clean_session)
    done = threading.Event()
    c.on_connect = lambda *a, **k: done.set()
    c.connect(fleet.broker.host, fleet.broker.port, keepalive=10)
    c.loop_start()
    try:
        assert done.wait(5), f"{attacker} could not connect at all"
    finally:
        c.disconnect()
        c.loop_stop()


@pytest.mark.parametrize("attacker", ["pump-1", "operator", "collector-b"])
def test_no_certificate_kicks_a_device_off(fleet, attacker):
    watch = fleet.subscriber("collector", [T2])
    victim = fleet.client("pump-2", client_id="pump-2", clean_session=False)
    kicked = counting_disconnects(victim)
    for i in range(ROUNDS):
        connect_as(fleet, attacker, "pump-2")
        fleet.publish(victim, T2, b"rec-%d" % i)
    assert watch.wait_count(ROUNDS, 10)
    assert kicked == [] and victim.is_connected()
    assert [p for _, p in watch.messages] == [b"rec-%d" % i for i in range(ROUNDS)]
    # the attacker got its own CN as client id, never the victim's
    log = fleet.broker.log_text()
    assert f"as {attacker} (" in log and f"as pump-2 (" in log
    assert log.count("as pump-2 (") == 1


@pytest.mark.parametrize("clean", [True, False], ids=["clean", "resumed"])
@pytest.mark.parametrize("attacker", ["pump-1", "operator", "collector-b"])
def test_no_certificate_wipes_the_collector_session(fleet, attacker, clean):
    col = fleet.collector()
    kicked = counting_disconnects(col.client)
    dev = fleet.client("pump-2", client_id="pump-2", clean_session=False)
    seq = 0
    # collector online: every takeover attempt between two records
    for _ in range(ROUNDS):
        for cid in ("medsentry-collector", "collector"):
            connect_as(fleet, attacker, cid, clean)
        seq += 1
        fleet.publish(dev, T2, sealed(fleet, seq))
    assert col.wait_for(lambda s: s["accepted"] == seq, 10), col.stats
    assert kicked == []
    # collector away: the broker acknowledges records to the device and queues
    # them in the collector's session; the attacker tries to replace that session
    col.stop()
    for _ in range(ROUNDS):
        seq += 1
        fleet.publish(dev, T2, sealed(fleet, seq))
        for cid in ("medsentry-collector", "collector"):
            connect_as(fleet, attacker, cid, clean)
    col2 = fleet.collector()
    assert col2.wait_for(lambda s: s["accepted"] == ROUNDS, 10), col2.stats
    col2.flush()
    assert col2.db.seqs("pump-2") == list(range(1, seq + 1))
    assert col2.db.lost() == 0


def test_each_collector_instance_has_its_own_session(fleet, tmp_path):
    """Two collector instances (own certificates, own databases) both get every
    record; neither replaces the other's session."""
    a = fleet.collector()
    db_b = FleetDB(tmp_path / "b.db")
    b = Collector(fleet.pki, db_b, CollectorConfig(host=fleet.broker.host, port=fleet.broker.port,
                                                   identity="collector-b", client_id="collector")).start()
    try:
        kicked = counting_disconnects(a.client) + counting_disconnects(b.client)
        dev = fleet.client("pump-2")
        for seq in range(1, ROUNDS + 1):
            fleet.publish(dev, T2, sealed(fleet, seq))
        for col in (a, b):
            assert col.wait_for(lambda s: s["accepted"] == ROUNDS, 10), col.stats
        assert kicked == []
    finally:
        b.stop()
        db_b.close()


def test_device_ids_cannot_take_a_collector_instance_name(fleet):
    from host_tools.pki import PkiError

    for name in ("collector-b", "Collector-c", "operator-x", "collector"):
        with pytest.raises(PkiError):
            fleet.pki.issue(name, "pump-v2")
