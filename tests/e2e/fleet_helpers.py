"""Helpers for the fleet cluster tests (tests/e2e/test_fleet_cluster.py): MQTT
clients with fleet identities, sealed records, a host-side QoS 1 device that moves
to the next node when its node dies, collector processes."""
from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
import time

import cbor2
import paho.mqtt.client as mqtt

from host_tools.collector.cose import seal
from host_tools.pki import FleetPKI

N = 300  # records per streaming device, ~100/s each


def connect(cluster, name, node=0, *, username=None, password=None, client_id=None, clean=True,
            timeout=10.0, on_message=None):
    """(client, None) when CONNACK success, else (None, reason)."""
    pki = cluster.pki
    ident = pki.device_identity(name) if (pki.devices_dir / f"{name}.json").exists() else pki.client_identity(name)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"{name}",
                    clean_session=clean)
    c.tls_set(ca_certs=str(ident.ca), certfile=str(ident.cert), keyfile=str(ident.key),
              cert_reqs=ssl.CERT_REQUIRED)
    if username is not None:
        c.username_pw_set(username, password)
    if on_message is not None:  # before CONNECT: a persistent session delivers at once
        c.on_message = on_message
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


def acked(info: mqtt.MQTTMessageInfo) -> bool:
    try:
        return info.is_published()
    except (RuntimeError, ValueError):  # publish failed: not connected
        return False


class Device(threading.Thread):
    """Host-side device: seal seq 1..N, publish QoS 1, resend until PUBACK; on a lost
    connection move to the next endpoint (like the Supervisor in agent/telemetry/mqtt.py)."""

    def __init__(self, pki: FleetPKI, dev: str, endpoints: list[tuple[str, int]]) -> None:
        super().__init__(daemon=True)
        self.pki, self.dev, self.endpoints = pki, dev, endpoints
        self.acked: dict[int, int] = {}   # seq -> endpoint index that PUBACKed it
        self.resent = 0
        self.unacked_at_loss: list[int] = []
        self.ep = 0
        self.stop = False

    def _client(self) -> mqtt.Client:
        ident = self.pki.device_identity(self.dev)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.dev)
        c.tls_set(ca_certs=str(ident.ca), certfile=str(ident.cert), keyfile=str(ident.key),
                  cert_reqs=ssl.CERT_REQUIRED)
        c.max_inflight_messages_set(20)
        return c

    def run(self) -> None:
        tk = self.pki.device(self.dev).active_key()
        topic = f"medsentry/{self.dev}/telemetry"
        pending = [(s, seal(cbor2.dumps({"t": 1764489600 + s, "seq": s, "hr": 70}), key=tk.key,
                            base_iv=tk.base_iv, kid=tk.kid, seq=s, topic=topic)) for s in range(1, N + 1)]
        while pending and not self.stop:
            c = self._client()
            host, port = self.endpoints[self.ep]
            try:
                c.connect(host, port, keepalive=5)
            except OSError:
                self.ep = (self.ep + 1) % len(self.endpoints)
                time.sleep(0.3)
                continue
            c.loop_start()
            infos = []
            try:
                for s, p in pending[:20]:
                    infos.append((s, c.publish(topic, p, qos=1)))
                    time.sleep(0.01)
                for s, info in infos:
                    try:
                        info.wait_for_publish(3)
                    except (RuntimeError, ValueError):
                        pass
                    if not acked(info):
                        raise OSError("no PUBACK")
                    self.acked.setdefault(s, self.ep)
                done = {s for s, _ in infos}
                pending = [(s, p) for s, p in pending if s not in done]
            except (OSError, RuntimeError, ValueError):
                self.unacked_at_loss += [s for s, i in infos if not acked(i)]
                self.resent += sum(1 for _, i in infos if not acked(i))
                self.ep = (self.ep + 1) % len(self.endpoints)
            finally:
                c.disconnect()
                c.loop_stop()


def collector_proc(work, identity: str, amqp: str, url: str, shard: str = "0/1") -> subprocess.Popen:
    cmd = [sys.executable, "-m", "host_tools.cli.main", "--workdir", str(work), "collector",
           "--identity", identity, "--amqp", amqp, "--db", url, "--shard", shard]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


class Partition:
    """TCP relays in front of broker endpoints that an on-path attacker (or a broken
    switch) can silence: ``cut()`` black-holes the relayed connections and every new
    one (bytes read and dropped, nothing answered, nothing closed); ``heal()`` closes
    what was cut off (the peers' sessions are long dead by then) and relays again."""

    def __init__(self, endpoints: list[tuple[str, int]]) -> None:
        self.targets = list(endpoints)
        self.cut_off = threading.Event()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listeners = []
        for target in self.targets:
            ls = socket.create_server(("127.0.0.1", 0))
            self._listeners.append(ls)
            threading.Thread(target=self._accept, args=(ls, target), daemon=True).start()

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", ls.getsockname()[1]) for ls in self._listeners]

    def cut(self) -> None:
        self.cut_off.set()

    def heal(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            s.close()
        self.cut_off.clear()

    def close(self) -> None:
        for ls in self._listeners:
            ls.close()
        self.heal()

    def _keep(self, *socks: socket.socket) -> None:
        with self._lock:
            self._socks.extend(socks)

    def _accept(self, ls: socket.socket, target: tuple[str, int]) -> None:
        while True:
            try:
                down, _ = ls.accept()
            except OSError:
                return  # closed
            self._keep(down)
            if self.cut_off.is_set():
                threading.Thread(target=self._pump, args=(down, None), daemon=True).start()
                continue
            try:
                up = socket.create_connection(target, timeout=5)
            except OSError:
                down.close()
                continue
            self._keep(up)
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket | None) -> None:
        try:
            while data := src.recv(65536):
                if dst is not None and not self.cut_off.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                if s is not None and not self.cut_off.is_set():
                    s.close()
