"""Issue 11 item 1: the broker's limits, TLS suites and renewal revocation, attacked.

* oversize publishes (the review sent ten 20 MiB ones: accepted, Mosquitto grew
  10 -> 229 MiB) are refused and Mosquitto's RSS stays bounded;
* retained messages are refused (a retained garbage record was replayed to every
  collector reconnect);
* TLS 1.2 with CBC/SHA-1 suites only is refused, AEAD suites work;
* after ``pki issue --renew`` the superseded certificate is refused.
"""
from __future__ import annotations

import shutil
import socket
import ssl
import threading
import time

import pytest

from host_tools.broker.config import MAX_PACKET, RECORD_MAX
from host_tools.collector import tls_client
from tests.e2e.broker_fixtures import fleet, running_fleet, try_connect  # noqa: F401 (fixture)

T1 = "medsentry/pump-1/telemetry"
SETTLE = 0.5


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def publish_and_wait_disconnect(fleet, name: str, topic: str, payload: bytes, *, retain: bool = False,
                                timeout: float = 10.0) -> bool:
    """Publish once (QoS 1) on a fresh connection; True if the broker dropped the
    connection instead of acknowledging."""
    c = tls_client(fleet.identity(name), name)
    gone, connected, acked = threading.Event(), threading.Event(), threading.Event()
    c.on_connect = lambda *a, **k: connected.set()
    c.on_disconnect = lambda *a, **k: gone.set()
    c.on_publish = lambda *a, **k: acked.set()
    c.connect(fleet.broker.host, fleet.broker.port, keepalive=10)
    c.loop_start()
    try:
        assert connected.wait(5)
        c.publish(topic, payload, qos=1, retain=retain)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (gone.is_set() or acked.is_set()):
            time.sleep(0.01)
        return gone.is_set() and not acked.is_set()
    finally:
        c.disconnect()
        c.loop_stop()


def test_publish_above_one_record_is_refused(tmp_path):
    """Just above the record limit is refused; a full-size record on the longest
    device topic is accepted (the limit is not simply closed)."""
    longest_id = "p" * 64
    longest = f"medsentry/{longest_id}/telemetry"
    with running_fleet(tmp_path, devices=[("pump-1", "pump-v2"), (longest_id, "pump-v2")]) as fleet:
        watch = fleet.subscriber("collector", ["medsentry/+/telemetry"])
        # message_size_limit: dropped (Mosquitto may still PUBACK it), never delivered
        publish_and_wait_disconnect(fleet, "pump-1", T1, b"\1" * (RECORD_MAX + 1))
        assert not publish_and_wait_disconnect(fleet, longest_id, longest, b"\2" * RECORD_MAX)
        assert watch.wait_count(1)
        time.sleep(SETTLE)
        assert watch.messages == [(longest, b"\2" * RECORD_MAX)]
        assert MAX_PACKET < 2 * RECORD_MAX


def test_flood_of_20mib_publishes_leaves_broker_rss_bounded(fleet):
    pid = fleet.broker.proc.pid
    before = rss_kib(pid)
    for _ in range(10):
        assert publish_and_wait_disconnect(fleet, "pump-1", T1, b"\0" * (20 << 20))
    grown = rss_kib(pid) - before
    assert grown < 8 * 1024, f"mosquitto RSS grew by {grown} KiB"
    assert "too large packet" in fleet.broker.log_text() or "oversize" in fleet.broker.log_text().lower()


def test_retained_publish_is_refused_and_never_replayed(fleet):
    assert publish_and_wait_disconnect(fleet, "pump-1", T1, b"garbage-record", retain=True)
    late = fleet.subscriber("collector", ["medsentry/+/telemetry", "medsentry/+/status"])
    time.sleep(SETTLE)
    assert late.messages == []


def test_retained_last_will_is_refused(fleet):
    c = tls_client(fleet.identity("pump-1"), "pump-1")
    c.will_set("medsentry/pump-1/status", b"x", qos=1, retain=True)
    result: list = []
    done = threading.Event()

    def on_connect(cl, u, flags, reason, props=None):
        result.append(reason.is_failure)
        done.set()

    c.on_connect = on_connect
    c.on_disconnect = lambda *a, **k: done.set()
    c.connect(fleet.broker.host, fleet.broker.port, keepalive=10)
    c.loop_start()
    try:
        done.wait(5)
        assert result != [False], "a retained will was accepted"
    finally:
        c.disconnect()
        c.loop_stop()


def tls12_handshake(fleet, ciphers: str) -> str | None:
    """TLS 1.2 only, offering only ``ciphers``; None when the handshake worked."""
    ident = fleet.identity("pump-1")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ident.ca))
    ctx.load_cert_chain(str(ident.cert), str(ident.key))
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ciphers)
    try:
        with socket.create_connection((fleet.broker.host, fleet.broker.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=fleet.broker.host) as tls:
                tls.do_handshake()
                return None
    except (ssl.SSLError, OSError) as exc:
        return str(exc)


CBC_ONLY = ("@SECLEVEL=0:ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:"
            "ECDHE-ECDSA-AES256-SHA384:AES128-SHA:AES256-SHA:AES128-SHA256:AES256-SHA256")


def test_tls12_cbc_suites_are_refused_aead_accepted(fleet):
    assert tls12_handshake(fleet, CBC_ONLY) is not None
    assert tls12_handshake(fleet, "ECDHE-ECDSA-AES128-GCM-SHA256") is None
    assert tls12_handshake(fleet, "ECDHE-ECDSA-CHACHA20-POLY1305") is None


def test_openssl_s_client_with_cbc_sha1_is_refused(fleet):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl command not installed")
    import subprocess

    ident = fleet.identity("pump-1")
    base = [openssl, "s_client", "-connect", f"{fleet.broker.host}:{fleet.broker.port}", "-tls1_2",
            "-CAfile", str(ident.ca), "-cert", str(ident.cert), "-key", str(ident.key)]
    cbc = subprocess.run(base + ["-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0"], input=b"",
                         capture_output=True, timeout=20)
    gcm = subprocess.run(base + ["-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], input=b"",
                         capture_output=True, timeout=20)
    assert cbc.returncode != 0, cbc.stdout.decode(errors="replace")[-500:]
    assert gcm.returncode == 0 and b"ECDHE-ECDSA-AES128-GCM-SHA256" in gcm.stdout


def test_renewed_device_certificate_revokes_the_old_one(fleet, tmp_path):
    old = fleet.identity("pump-1")
    keep = tmp_path / "old"
    keep.mkdir()
    old_cert, old_key = keep / "pump-1.crt", keep / "pump-1.key"
    shutil.copy(old.cert, old_cert)
    shutil.copy(old.key, old_key)
    old_serial = fleet.pki.device("pump-1").serial
    assert try_connect(fleet.broker.host, fleet.broker.port, old.ca, old_cert, old_key) is None
    rec = fleet.pki.issue("pump-1", "pump-v2", renew=True)
    assert rec.serial != old_serial and int(old_serial, 16) in fleet.pki.revoked_serials()
    fleet.broker.restart()  # re-reads the CRL
    assert try_connect(fleet.broker.host, fleet.broker.port, old.ca, old_cert, old_key) is not None
    new = fleet.identity("pump-1")
    assert try_connect(fleet.broker.host, fleet.broker.port, new.ca, new.cert, new.key) is None
    # the renewed device is not treated as revoked
    assert fleet.pki.device("pump-1").revoked is None


def test_reissued_service_certificate_revokes_the_old_one(fleet, tmp_path):
    """`pki issue-service NAME` again (a leaked collector key, a rotation): the old
    certificate goes on the CRL, as for a renewed device, and the broker refuses it."""
    old = fleet.pki.issue_client("collector-r")
    keep = tmp_path / "old"
    keep.mkdir()
    old_cert, old_key = keep / "c.crt", keep / "c.key"
    shutil.copy(old.cert, old_cert)
    shutil.copy(old.key, old_key)
    fleet.broker.restart()
    assert try_connect(fleet.broker.host, fleet.broker.port, old.ca, old_cert, old_key) is None
    new = fleet.pki.issue_client("collector-r")
    from cryptography import x509
    old_serial = x509.load_pem_x509_certificate(old_cert.read_bytes()).serial_number
    assert old_serial in fleet.pki.revoked_serials()
    fleet.broker.restart()  # re-reads the CRL
    assert try_connect(fleet.broker.host, fleet.broker.port, old.ca, old_cert, old_key) is not None
    assert try_connect(fleet.broker.host, fleet.broker.port, new.ca, new.cert, new.key) is None
