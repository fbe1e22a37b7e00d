"""Run a RabbitMQ cluster of N local nodes with the MQTT plugin (tests, `broker run --cluster`).

    with RabbitCluster(pki, workdir / "cluster", nodes=3) as cluster:
        cluster.endpoints        # [(host, mqtt_port), ...] one per node
        cluster.amqp_endpoints   # [(host, amqps_port), ...]
        cluster.kill(1)          # SIGKILL node 1 (a crash); cluster.start_node(1)

Each node has its own name (``ms<tag>-<i>@localhost``), ports, config, data and
log directory; all share one Erlang cookie under ``run_dir/home``. The nodes form
the cluster at boot (classic_config peer discovery); the definitions (users
without passwords, permissions, topic permissions, the quorum collector queue)
are imported once the cluster is up, so the quorum queue spans all nodes. The
server scripts are run from /usr/lib/rabbitmq/bin (the /usr/sbin wrappers switch
user and drop the environment).
"""
from __future__ import annotations

import atexit
import functools
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

from host_tools.pki import FleetPKI

from . import rabbit_plugin
from .plugin import BURST, RATE
from .rabbit_config import NodePorts, render_advanced, render_conf, write_crl_dir, write_definitions
from .runner import BrokerError, free_port, tls_probe

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
#: Erlang VM flags of a node: no scheduler busy-waiting (the nodes share the
#: machine with the tests and each other); ``+S N:N`` is added (``schedulers``).
ERL_FLAGS = "+sbwt none +sbwtdcpu none +sbwtdio none +A 4"


class RabbitCluster:
    def __init__(self, pki: FleetPKI, run_dir: str | Path, *, nodes: int = 3, host: str = "127.0.0.1",
                 ready_timeout: float = 180.0, schedulers: int = 1, rate_limit: int = RATE,
                 rate_burst: int = BURST) -> None:
        """``schedulers``: Erlang schedulers per node (1 keeps three nodes and the
        tests from crowding 2 cores; bench/fleet_load.py measures with both).
        ``rate_limit``/``rate_burst``: each client's publishes per second after a
        burst, per node (ratelimit/medsentry_ratelimit.erl)."""
        if schedulers < 1:
            raise ValueError(f"schedulers {schedulers}: want at least 1")
        if rate_limit < 1 or rate_burst < 1:
            raise ValueError(f"rate limit {rate_limit}/s burst {rate_burst}: want at least 1 each")
        self.rate_limit, self.rate_burst = rate_limit, rate_burst
        self.schedulers = schedulers
        self.pki = pki
        self.run_dir = Path(run_dir).resolve()
        self.host = host
        self.n = nodes
        self.ready_timeout = ready_timeout
        self.tag = secrets.token_hex(3)
        self.names = [f"ms{self.tag}-{i}@localhost" for i in range(1, nodes + 1)]
        self.ports: list[NodePorts] = []
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * nodes
        self._atexit = False

    # -- paths and environment ---------------------------------------------------
    @functools.cached_property
    def plugins_dir(self) -> Path:
        """Our rate-limit plugin, built on first use (rabbit_plugin.py): by the first
        node's environment, so a failed build starts no node (fail closed)."""
        return rabbit_plugin.plugins_dir()

    @property
    def home(self) -> Path:
        return self.run_dir / "home"

    @property
    def crl_dir(self) -> Path:
        return self.run_dir / "crl"

    def node_dir(self, i: int) -> Path:
        return self.run_dir / f"node{i + 1}"

    def env(self, i: int) -> dict[str, str]:
        d = self.node_dir(i)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env.update({
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": self.names[i],
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PLUGINS_DIR": f"{rabbit_plugin.RABBIT_PLUGINS}:{self.plugins_dir}",
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(d / "rabbit.pid"),
            "RABBITMQ_DIST_PORT": str(self.ports[i].dist),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"{ERL_FLAGS} +S {self.schedulers}:{self.schedulers}",
            "RABBITMQ_CTL_ERL_ARGS": "+S 1:1",
        })
        return env

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [(self.host, p.mqtt) for p in self.ports]

    @property
    def amqp_endpoints(self) -> list[tuple[str, int]]:
        return [(self.host, p.amqp) for p in self.ports]

    def log_text(self, i: int) -> str:
        out = []
        for f in sorted((self.node_dir(i) / "log").glob("*.log")):
            out.append(f.read_text(errors="replace"))
        return "\n".join(out)

    # -- lifecycle -------------------------------------------------------------
    def _write(self) -> None:
        self.pki.require_init()
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16))
            cookie.chmod(0o400)
        write_crl_dir(self.pki, self.crl_dir)
        if not self.ports:
            taken: set[int] = set()
            for _ in range(self.n):
                ports = []
                while len(ports) < 3:
                    p = free_port(self.host)
                    if p not in taken and p < 60000:
                        taken.add(p)
                        ports.append(p)
                self.ports.append(NodePorts(*ports))
        for i in range(self.n):
            d = self.node_dir(i)
            (d / "log").mkdir(parents=True, exist_ok=True)
            (d / "rabbitmq.conf").write_text(render_conf(self.ports[i], self.host, self.names))
            (d / "advanced.config").write_text(render_advanced(self.pki, self.crl_dir, self.rate_limit,
                                                                             self.rate_burst))
            (d / "rabbitmq-env.conf").write_text("")
            (d / "enabled_plugins").write_text("[rabbitmq_mqtt,rabbitmq_auth_mechanism_ssl,"
                                                "rabbitmq_consistent_hash_exchange,medsentry_ratelimit].\n")

    def start_node(self, i: int) -> None:
        if self.procs[i] is not None and self.procs[i].poll() is None:  # type: ignore[union-attr]
            return
        log = open(self.node_dir(i) / "stdout.log", "ab")
        self.procs[i] = subprocess.Popen([str(RABBIT_BIN / "rabbitmq-server")], env=self.env(i),
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        log.close()
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True

    def ctl(self, *args: str, node: int = 0, timeout: float = 120.0, check: bool = True) -> str:
        """Run rabbitmqctl against one node; return its stdout."""
        proc = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.names[node], *args],
                              env=self.env(node), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise BrokerError(f"rabbitmqctl {' '.join(args)}: {proc.stdout}{proc.stderr}")
        return proc.stdout

    def wait_node(self, i: int, timeout: float | None = None) -> None:
        """Until node ``i`` completes a mutual-TLS handshake on its MQTT port."""
        ident = self.pki.client_identity("collector")
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        while time.monotonic() < deadline:
            proc = self.procs[i]
            if proc is not None and proc.poll() is not None:
                raise BrokerError(f"node {self.names[i]} exited {proc.returncode}:\n"
                                  f"{self.log_text(i)[-3000:]}")
            if tls_probe(self.host, self.ports[i].mqtt, ident.ca, ident.cert, ident.key, timeout=1.0):
                return
            time.sleep(0.3)
        raise BrokerError(f"node {self.names[i]} not ready:\n{self.log_text(i)[-3000:]}")

    def wait_mqtt(self, i: int, timeout: float | None = None) -> None:
        """Until node ``i`` accepts an MQTT session (CONNACK success) from the
        collector's certificate: a node answers TLS, and even CONNECT with
        "Server unavailable", before its MQTT client-id tracking has a leader
        (seconds after the cluster forms, longer on a loaded machine)."""
        import ssl
        import threading

        import paho.mqtt.client as mqtt

        ident = self.pki.client_identity("collector")
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        last = "no answer"
        while time.monotonic() < deadline:
            done = threading.Event()
            got: dict = {}
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="collector", clean_session=True)
            c.tls_set(ca_certs=str(ident.ca), certfile=str(ident.cert), keyfile=str(ident.key),
                      cert_reqs=ssl.CERT_REQUIRED)
            c.on_connect = lambda cl, u, f, rc, p=None: (got.setdefault("rc", rc), done.set())
            c.on_disconnect = lambda cl, u, f, rc, p=None: (got.setdefault("gone", rc), done.set())
            try:
                c.connect(self.host, self.ports[i].mqtt, keepalive=10)
                c.loop_start()
                done.wait(5.0)
                rc = got.get("rc")
                if rc is not None and not rc.is_failure and "gone" not in got:
                    return
                last = str(got or "timeout")
            except (OSError, ssl.SSLError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            finally:
                c.disconnect()
                c.loop_stop()
            time.sleep(0.5)
        raise BrokerError(f"node {self.names[i]}: MQTT sessions not accepted ({last}):\n"
                          f"{self.log_text(i)[-3000:]}")

    def _epmd(self, *args: str) -> bool:
        try:
            return subprocess.run(["epmd", *args], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def start(self) -> "RabbitCluster":
        # The first node starts the shared Erlang port mapper if none runs; stop() ends
        # it again then (and only if no other node is registered with it).
        self._own_epmd = not self._epmd("-names")
        self._write()
        # One node at a time: nodes booting together can race while the MQTT
        # plugin forms its client-id tracking cluster (Ra), and a node then never
        # learns its leader ("leader not known", every CONNECT refused; seen once
        # in a full test run on 2 loaded cores). Starting nodes 2 and 3 together
        # still did it: both waited 100 s for the leader in 2 of 5 starts here.
        try:
            for i in range(self.n):
                self.start_node(i)
                self.wait_node(i)
            self.ctl("await_online_nodes", str(self.n), "--timeout", "120")
            self.load_definitions()
            self.ctl("delete_user", "guest", check=False)
            for i in range(self.n):
                try:
                    self.wait_mqtt(i, timeout=self.ready_timeout / 2)
                except BrokerError:
                    # Once: a restarted node joins the formed cluster and its leader.
                    self.stop_node(i)
                    self.start_node(i)
                    self.wait_node(i)
                    self.wait_mqtt(i)
        except BaseException:
            self.stop()
            raise
        return self

    def load_definitions(self, devices: list[str] | None = None) -> None:
        """(Re-)import users and permissions from the PKI (after issuing devices)."""
        path = write_definitions(self.pki, self.run_dir / "definitions.json", devices)
        self.ctl("import_definitions", str(path))

    def refresh_crl(self) -> None:
        """Publish the current CRL to the nodes (read on each new handshake)."""
        write_crl_dir(self.pki, self.crl_dir)

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` (its whole process group): a crash."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        self.procs[i] = None

    def stop_node(self, i: int, timeout: float = 30.0) -> None:
        proc = self.procs[i]
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill(i)
            except ProcessLookupError:
                pass
        self.procs[i] = None

    def stop(self) -> None:
        for i in range(self.n):
            if self.procs[i] is not None and self.procs[i].poll() is None:  # type: ignore[union-attr]
                try:
                    os.killpg(self.procs[i].pid, signal.SIGTERM)  # type: ignore[union-attr]
                except ProcessLookupError:
                    pass
        for i in range(self.n):
            self.stop_node(i)
        if getattr(self, "_own_epmd", False):
            out = subprocess.run(["epmd", "-names"], capture_output=True, text=True, timeout=10).stdout
            if "name " not in out:
                self._epmd("-kill")
            self._own_epmd = False

    def __enter__(self) -> "RabbitCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
