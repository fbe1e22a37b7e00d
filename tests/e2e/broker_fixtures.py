"""Shared helpers for end-to-end tests against a REAL Mosquitto with the fleet PKI.

Import explicitly (there is no conftest for this)::

    from tests.e2e.broker_fixtures import fleet  # noqa: F401 - the pytest fixture

    FLEET_DEVICES = [("pump-1", "pump-v2")]  # optional, per test module
    FLEET_PERSISTENCE = True                 # optional, per test module

The ``fleet`` fixture is ``running_fleet`` with the module's ``FLEET_DEVICES``
(default ``DEFAULT_DEVICES``) and ``FLEET_PERSISTENCE`` (default False).

API
---
``running_fleet(tmp_path, devices=..., persistence=False)`` (context manager) ->
``Fleet``: runs ``pki init`` + ``pki issue`` for each ``(device_id, model)`` under
``tmp_path / "work"``, issues a second collector identity ``collector-b`` (each
collector instance has its own certificate: the broker makes the certificate CN the
client id, so two connections with one certificate take each other's place),
starts Mosquitto on a free loopback port, stops it on exit.

``Fleet`` attributes / methods:
  ``workdir``, ``pki`` (FleetPKI), ``broker`` (host_tools.broker.Broker: ``host``,
  ``port``, ``restart(kill=...)``, ``log_text()``),
  ``identity(name)``: device or service (collector/operator) Identity (cert, key, ca paths),
  ``record(device_id)``: DeviceRecord (telemetry keys: ``record.active_key()``),
  ``client(name, client_id=None, clean_session=True)``: connected paho 2.x client
  (loop running; closed automatically at exit); raises ConnectionError if refused,
  ``subscriber(name, topics, qos=1)``: a ``Subscriber`` collecting messages,
  ``publish(client, topic, payload, qos=1)``: publish and wait for PUBACK,
  ``collector(**kw)``: a started host_tools Collector on ``workdir/fleet.db``
  (stopped at exit).

``try_connect(host, port, ca, cert=None, key=None, timeout=5)`` -> ``None`` when an MQTT
CONNACK "success" was received, else a string saying why it failed (TLS alert,
refused, timeout). Use it for "refused" checks (no cert, revoked, expired).

``Subscriber``: ``.messages`` (list of (topic, payload)), ``.wait_count(n, timeout)``.

Independent sealing (pycose 1.1 + cbor2 < 6, NOT host_tools.collector.cose) for
cross-checks: ``pycose_seal(record, seq=, topic=, key=, base_iv=, kid=)``,
``seal_with(telemetry_key, record, topic=)``, ``pycose_usable_key(pki, device_id)``
(see its docstring: pycose cannot use a base IV starting with 0x00),
``random_key_like(tk)``, ``record(seq, **overrides)`` (a plausible telemetry map),
``piv(seq)``.
"""
from __future__ import annotations

import secrets
import ssl
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import cbor2
import paho.mqtt.client as mqtt
import pytest
from pycose.algorithms import AESCCM1664128
from pycose.headers import KID, Algorithm, PartialIV
from pycose.keys import SymmetricKey
from pycose.messages import Enc0Message

from host_tools.broker import Broker
from host_tools.collector import Collector, CollectorConfig, FleetDB, tls_client
from host_tools.pki import DeviceRecord, FleetPKI, Identity, TelemetryKey

DEFAULT_DEVICES = (("pump-1", "pump-v2"), ("pump-2", "pump-v2"))


def try_connect(host: str, port: int, ca: Path, cert: Path | None = None, key: Path | None = None,
                timeout: float = 5.0, client_id: str | None = None) -> str | None:
    """Try one MQTT 3.1.1 CONNECT over TLS. None = connected, else the failure reason."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}")
    client.tls_set(ca_certs=str(ca), certfile=str(cert) if cert else None,
                   keyfile=str(key) if key else None, cert_reqs=ssl.CERT_REQUIRED)
    result: dict[str, str | None] = {}
    done = threading.Event()

    def on_connect(c, u, flags, reason, props=None):
        result["r"] = None if not reason.is_failure else f"CONNACK {reason}"
        done.set()

    def on_disconnect(c, u, flags, reason, props=None):
        result.setdefault("r", f"disconnected before CONNACK: {reason}")
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect(host, port, keepalive=10)
    except (OSError, ssl.SSLError) as exc:
        return f"{type(exc).__name__}: {exc}"
    client.loop_start()
    try:
        if not done.wait(timeout):
            return "timeout waiting for CONNACK"
        return result.get("r")
    finally:
        client.disconnect()
        client.loop_stop()


class Subscriber:
    """A connected client that records every message it receives."""

    def __init__(self, client: mqtt.Client) -> None:
        self.client = client
        self.messages: list[tuple[str, bytes]] = []
        self.granted: list[list] = []
        self._lock = threading.Lock()
        self._subacked = threading.Event()
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe

    def _on_message(self, c, u, msg):
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def _on_subscribe(self, c, u, mid, reasons, props):
        self.granted.append(list(reasons))
        self._subacked.set()

    def subscribe(self, topics: list[str], qos: int = 1, timeout: float = 5.0) -> list:
        """Subscribe and wait for the SUBACK; returns the reason codes."""
        self._subacked.clear()
        self.client.subscribe([(t, qos) for t in topics])
        if not self._subacked.wait(timeout):
            raise TimeoutError("no SUBACK")
        return self.granted[-1]

    def wait_count(self, n: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= n:
                    return True
            time.sleep(0.01)
        return len(self.messages) >= n

    def topics(self) -> list[str]:
        with self._lock:
            return [t for t, _ in self.messages]


class Fleet:
    """A work dir with PKI + a running broker; see module docstring."""

    def __init__(self, workdir: Path, pki: FleetPKI, broker: Broker, stack: ExitStack) -> None:
        self.workdir = workdir
        self.pki = pki
        self.broker = broker
        self._stack = stack

    def identity(self, name: str) -> Identity:
        if self.pki.record_path(name).exists():
            return self.pki.device_identity(name)
        return self.pki.client_identity(name)

    def record(self, device_id: str) -> DeviceRecord:
        return self.pki.device(device_id)

    def client(self, name: str, client_id: str | None = None, clean_session: bool = True,
               timeout: float = 5.0) -> mqtt.Client:
        client = tls_client(self.identity(name), client_id or f"{name}-{uuid.uuid4().hex[:6]}",
                            clean_session=clean_session)
        connected = threading.Event()
        failure: list[str] = []

        def on_connect(c, u, flags, reason, props=None):
            if reason.is_failure:
                failure.append(str(reason))
            connected.set()

        client.on_connect = on_connect
        client.connect(self.broker.host, self.broker.port, keepalive=30)
        client.loop_start()
        if not connected.wait(timeout) or failure:
            client.loop_stop()
            raise ConnectionError(f"{name} could not connect: {failure or 'timeout'}")

        def close() -> None:
            client.disconnect()
            client.loop_stop()

        self._stack.callback(close)
        return client

    def subscriber(self, name: str, topics: list[str], qos: int = 1) -> Subscriber:
        sub = Subscriber(self.client(name))
        sub.subscribe(topics, qos)
        return sub

    @staticmethod
    def publish(client: mqtt.Client, topic: str, payload: bytes, qos: int = 1, timeout: float = 5.0) -> None:
        info = client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"publish to {topic} not acknowledged")

    def collector(self, **kw: object) -> Collector:
        db = FleetDB(self.workdir / "fleet.db")
        col = Collector(self.pki, db, CollectorConfig(host=self.broker.host, port=self.broker.port, **kw))  # type: ignore[arg-type]
        col.start()
        self._stack.callback(db.close)
        self._stack.callback(col.stop)
        return col


@contextmanager
def running_fleet(tmp_path: Path, devices=DEFAULT_DEVICES, *, persistence: bool = False) -> Iterator[Fleet]:
    """PKI with ``devices`` issued + a running broker; everything stopped on exit.
    With ``persistence`` the broker also saves after every change: the tests
    that SIGKILL it must not lose what it had acknowledged within the last
    autosave second (host_tools/broker/NOTES.md, "Persistence")."""
    workdir = Path(tmp_path) / "work"
    pki = FleetPKI(workdir)
    pki.init()
    for device_id, model in devices:
        pki.issue(device_id, model)
    pki.issue_client("collector-b")
    broker = Broker(pki, workdir / "broker", persistence=persistence, autosave_on_changes=persistence)
    with ExitStack() as stack:
        broker.start()
        stack.callback(broker.stop)
        yield Fleet(workdir, pki, broker, stack)


# -- independent sealing (pycose) ----------------------------------------------------
def piv(seq: int) -> bytes:
    return seq.to_bytes(max(1, (seq.bit_length() + 7) // 8), "big")


def pycose_seal(record: dict, *, seq: int, topic: str, key: bytes, base_iv: bytes, kid: bytes) -> bytes:
    k = SymmetricKey(k=key, optional_params={"BASE_IV": base_iv})
    msg = Enc0Message(
        phdr={Algorithm: AESCCM1664128},
        uhdr={KID: kid, PartialIV: piv(seq)},
        payload=cbor2.dumps(record),
        external_aad=topic.encode(),
    )
    msg.key = k
    return msg.encode()


def seal_with(tk: TelemetryKey, record: dict, *, topic: str, seq: int | None = None) -> bytes:
    return pycose_seal(record, seq=record["seq"] if seq is None else seq, topic=topic,
                       key=tk.key, base_iv=tk.base_iv, kid=tk.kid)


def pycose_usable_key(pki: FleetPKI, device_id: str) -> TelemetryKey:
    """The device's active key, rotated until pycose can use it.

    pycose 1.1 turns the XORed nonce into bytes with minimal length, so a base IV
    starting with a zero byte (1 in 256 keys) yields a 12-byte nonce it cannot use.
    That is a pycose limitation, not part of our format; we rotate such keys away.
    """
    tk = pki.device(device_id).active_key()
    while tk.base_iv[0] == 0:
        old = tk
        tk = pki.rotate_key(device_id)
        pki.retire_key(device_id, old.kid.hex())
    return tk


def random_key_like(tk: TelemetryKey) -> tuple[bytes, bytes]:
    """A different (key, base_iv) pair, base IV with a non-zero first byte."""
    return secrets.token_bytes(16), b"\x01" + secrets.token_bytes(12)


def record(seq: int, t: float = 1764489600.0, **over: object) -> dict:
    rec = {
        "t": t + seq, "seq": seq, "hr": 60 + seq % 40, "spo2": 95 + seq % 5, "bp_sys": 120,
        "bp_dia": 80, "temp": 36.5 + (seq % 10) / 10,
        "pump": {"state": "running", "rate": 25.0, "vtbi": 100.0, "infused": seq * 0.1,
                 "alarms": [] if seq % 7 else ["OCCLUSION"]},
    }
    rec.update(over)
    return rec


@pytest.fixture
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    """The one `fleet` fixture of the broker/collector tests (see the module doc)."""
    devices = getattr(request.module, "FLEET_DEVICES", DEFAULT_DEVICES)
    persistence = getattr(request.module, "FLEET_PERSISTENCE", False)
    with running_fleet(tmp_path, devices=devices, persistence=persistence) as f:
        yield f
