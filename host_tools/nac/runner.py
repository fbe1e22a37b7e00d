"""Run a real FreeRADIUS (``freeradius -X -d DIR``) with the generated config on loopback.

    with Radius(pki, cfg, run_dir) as radius:        # free loopback port
        ... eapol_test against radius.host, radius.port, radius.secret ...
        radius.refresh()      # fleet data or CRL changed: regenerate, restart
"""
from __future__ import annotations

import atexit
import os
import secrets
import subprocess
import time
from pathlib import Path

from host_tools.broker.runner import free_udp_port
from host_tools.deps import require_program
from host_tools.network.config import NetworkConfig
from host_tools.pki import FleetPKI
from host_tools.procutil import read_log, stop_process

from .policy import Decision, fleet_decisions
from .radius_config import RadiusSettings, write_config

READY_LINE = "Ready to process requests"


class RadiusError(RuntimeError):
    """FreeRADIUS did not start (bad config, port taken) or stopped unexpectedly."""


class Radius:
    """A FreeRADIUS process answering admission requests for the fleet."""

    def __init__(self, pki: FleetPKI, cfg: NetworkConfig, run_dir: str | Path, *,
                 host: str = "127.0.0.1", port: int | None = None, client: str = "127.0.0.1",
                 secret: str | None = None, ready_timeout: float = 15.0) -> None:
        self.pki = pki
        self.cfg = cfg
        self.run_dir = Path(run_dir).resolve()
        self.host = host
        self.port = port
        self.client = client
        self.secret = secret or secrets.token_hex(16)
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.decisions: list[Decision] = []
        self._atexit = False

    @property
    def config_dir(self) -> Path:
        return self.run_dir / "raddb"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "radiusd.log"

    def log_text(self) -> str:
        return read_log(self.log_path)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def write(self, decisions: list[Decision] | None = None) -> Path:
        """Regenerate the config from the current fleet data (or `decisions`)."""
        if self.port is None:
            self.port = free_udp_port(self.host)
        self.decisions = fleet_decisions(self.pki, self.cfg) if decisions is None else decisions
        settings = RadiusSettings(host=self.host, port=self.port, client=self.client,
                                  secret=self.secret, run_as_root=os.geteuid() == 0)
        return write_config(self.pki, self.decisions, settings, self.config_dir)

    def start(self, decisions: list[Decision] | None = None) -> "Radius":
        if self.running:
            return self
        exe = require_program("freeradius")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.write(decisions)
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen([exe, "-X", "-d", str(self.config_dir)],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if READY_LINE in self.log_text():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log_text()[-3000:]
        self.stop()
        raise RadiusError(f"freeradius did not become ready on {self.host}:{self.port}:\n{tail}")

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc, timeout)

    def refresh(self) -> "Radius":
        """New decisions / CRL take effect: regenerate and restart on the same port.
        The fleet data is read before anything stops: when it cannot be read
        (PolicyError) the running server keeps serving the decisions it has."""
        decisions = fleet_decisions(self.pki, self.cfg)
        self.stop()
        return self.start(decisions)

    def __enter__(self) -> "Radius":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
