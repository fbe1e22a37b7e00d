"""A throw-away local PostgreSQL 15 server (Debian ``postgresql-15``) for tests and benches.

    with LocalPostgres() as pg:          # initdb in a fresh directory, free loopback port
        FleetDB(pg.url)                  # postgresql://medsentry@127.0.0.1:PORT/postgres
        pg.restart()                     # fast shutdown + start (a server restart)

The server runs as the ``postgres`` system user when started by root (PostgreSQL
refuses to run as root), listens on 127.0.0.1 only, with ``trust`` authentication
for its one loopback user: a test fixture, not a deployment (see README, fleet).
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from host_tools.broker.runner import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PostgresError(RuntimeError):
    """initdb / pg_ctl failed."""


class LocalPostgres:
    def __init__(self, base: str | Path | None = None, user: str = "medsentry") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="medsentry-pg-", dir=base))
        self.data = self.dir / "data"
        self.user = user
        self.port = 0
        self._as: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chmod(self.dir, 0o700)
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120.0) -> str:
        proc = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=timeout,
                              cwd="/")
        if proc.returncode != 0:
            raise PostgresError(f"{' '.join(args)}: {proc.stdout}{proc.stderr}")
        return proc.stdout

    def start(self) -> "LocalPostgres":
        if not self.data.exists():
            self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", self.user, "-A", "trust",
                      "--no-sync", "-E", "UTF8")
        if not self.port:
            self.port = free_port()
        opts = (f"-p {self.port} -h 127.0.0.1 -k {self.dir} -c fsync=on "
                "-c shared_buffers=32MB -c max_connections=40")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"),
                  "-o", opts, "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        """Stop (``fast``: disconnects every client, or ``immediate``: a crash) and start."""
        self.stop(mode)
        self.start()

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "LocalPostgres":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
