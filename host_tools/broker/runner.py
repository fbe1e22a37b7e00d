"""Run a real Mosquitto with the generated configuration (tests, demo, `broker run`).

    from host_tools.broker import Broker
    with Broker(pki, workdir / "broker") as broker:     # free loopback port
        ... connect to broker.host, broker.port ...
        broker.restart()          # same port, re-reads the CRL
        broker.restart(kill=True) # SIGKILL first: a crash
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

from host_tools.pki import FleetPKI
from host_tools.procutil import read_log, stop_process

from . import plugin as ratelimit
from .config import BrokerSettings, write_config

MOSQUITTO = "/usr/sbin/mosquitto"


class BrokerError(RuntimeError):
    """Mosquitto did not start, or stopped unexpectedly."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def tls_probe(host: str, port: int, ca: Path, cert: Path, key: Path, timeout: float = 1.0) -> bool:
    """True if a full mutual-TLS handshake with ``host:port`` succeeds."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                tls.do_handshake()
                return True
    except (OSError, ssl.SSLError):
        return False


class Broker:
    """A Mosquitto process on a loopback port, configured for the fleet PKI.

    ``run_dir`` receives mosquitto.conf, acl, mosquitto.log (and persistence/).
    ``port=None`` picks a free port at the first start; restarts keep it.
    ``run_as_root`` defaults to True when running as root (see NOTES.md).
    """

    def __init__(
        self,
        pki: FleetPKI,
        run_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        persistence: bool = True,
        autosave_on_changes: bool = False,
        run_as_root: bool | None = None,
        ready_timeout: float = 10.0,
        mosquitto: str = MOSQUITTO,
        rate_limit: int | None = ratelimit.RATE,
    ) -> None:
        self.pki = pki
        self.run_dir = Path(run_dir).resolve()
        self.host = host
        self.port = port
        self.persistence = persistence
        self.autosave_on_changes = autosave_on_changes
        self.run_as_root = (os.geteuid() == 0) if run_as_root is None else run_as_root
        self.ready_timeout = ready_timeout
        self.mosquitto = mosquitto
        self.rate_limit = rate_limit  # messages/s per client (plugin.py); None: none (capacity benches)
        self.proc: subprocess.Popen[bytes] | None = None
        self.config_path: Path | None = None
        self.acl_path: Path | None = None
        self._atexit_registered = False

    # -- paths ---------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.run_dir / "mosquitto.log"

    def log_text(self) -> str:
        return read_log(self.log_path)

    def _settings(self) -> BrokerSettings:
        assert self.port is not None
        return BrokerSettings(
            host=self.host,
            port=self.port,
            persistence=self.persistence,
            persistence_dir=self.run_dir / "persistence",
            autosave_on_changes=self.autosave_on_changes,
            log_file=self.log_path,
            run_as_root=self.run_as_root,
            rate_limit=self.rate_limit,
        )

    # -- lifecycle -------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "Broker":
        """Write the config and start Mosquitto; return once it completes a mutual
        TLS handshake (with the ``collector`` identity). If the port was taken
        meanwhile and it was chosen by us, retry on another free port."""
        if self.running:
            return self
        self.pki.require_init()
        chosen_here = self.port is None
        last_error = ""
        for _attempt in range(3):
            if self.port is None:
                self.port = free_port(self.host)
            self.config_path, self.acl_path = write_config(self.pki, self._settings(), self.run_dir)
            self.proc = subprocess.Popen(
                [self.mosquitto, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            if not self._atexit_registered:
                # A test or demo that dies without teardown must not leave Mosquitto
                # behind (it runs in its own session, so it would survive us).
                atexit.register(self.stop)
                self._atexit_registered = True
            try:
                self._wait_ready()
                return self
            except BrokerError as exc:
                last_error = str(exc)
                self._reap()
                if chosen_here and "in use" in last_error.lower():
                    self.port = None
                    continue
                break
        raise BrokerError(last_error)

    def _wait_ready(self) -> None:
        ident = self.pki.client_identity("collector")
        deadline = time.monotonic() + self.ready_timeout
        assert self.proc is not None and self.port is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise BrokerError(
                    f"mosquitto exited with {self.proc.returncode}: {err.strip()}\n{self.log_text()[-2000:]}"
                )
            if tls_probe(self.host, self.port, ident.ca, ident.cert, ident.key, timeout=0.5):
                return
            time.sleep(0.05)
        raise BrokerError(f"mosquitto not ready on {self.host}:{self.port} after {self.ready_timeout}s\n"
                          f"{self.log_text()[-2000:]}")

    def _reap(self, timeout: float = 5.0) -> None:
        proc = self.proc
        if proc is None:
            return
        stop_process(proc, timeout)
        if proc.stderr:
            proc.stderr.close()
        self.proc = None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (Mosquitto saves persistence and exits), SIGKILL after ``timeout``."""
        self._reap(timeout)

    def kill(self) -> None:
        """SIGKILL: a broker crash (nothing saved)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=5)
        self._reap()

    def restart(self, *, kill: bool = False) -> "Broker":
        """Stop (or kill) and start again on the same port; re-reads CRL and ACL."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start()

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port that was free on ``host`` a moment ago (RADIUS listeners)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
