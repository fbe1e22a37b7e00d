"""A small routed world in Linux network namespaces: the segmentation tests and the
demo's network stage apply the generated ruleset on its router.

Namespaces (names prefixed per run): ``router`` (forwards, applies the ruleset),
one namespace per device port (``ward-a``, ``ward-b``: the switch isolates device
ports, so every packet between them crosses the router), ``quar`` (a device moved
to the quarantine VLAN), ``core`` (broker, update server, collector addresses),
``lan`` (the rest of the hospital). Addresses: documentation ranges (RFC 5737).
Endpoints are plain TCP listeners answering ``ok``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SERVER = r"""
import socket, sys, threading
socks = []
for spec in sys.argv[1:]:
    host, port = spec.rsplit(":", 1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(16)
    socks.append(s)
def serve(s):
    while True:
        c, _ = s.accept()
        c.sendall(b"ok")
        c.close()
for s in socks:
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

CLIENT = r"""
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    sys.exit(0 if s.recv(2) == b"ok" else 1)
except OSError:
    sys.exit(1)
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


class World:
    """Create with ``World(prefix).build()``; always ``close()`` (deletes namespaces)."""

    # ns -> (address/prefix on its router link, router side address, extra addresses)
    PORTS = {
        "ward-a": ("198.51.100.66/30", "198.51.100.65/30", ()),
        "ward-b": ("198.51.100.70/30", "198.51.100.69/30", ()),
        "quar": ("198.51.100.194/30", "198.51.100.193/30", ()),
        "core": ("192.0.2.10/24", "192.0.2.1/24", ("192.0.2.20/24", "192.0.2.30/24")),
        "lan": ("203.0.113.10/24", "203.0.113.1/24", ()),
    }

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.created: list[str] = []
        self.servers: list[subprocess.Popen[bytes]] = []

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def build(self) -> "World":
        router = self.ns("router")
        for name in ["router", *self.PORTS]:
            _ip("netns", "add", self.ns(name))
            self.created.append(self.ns(name))
            _ip("-n", self.ns(name), "link", "set", "lo", "up")
        _ip("netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for i, (name, (addr, raddr, extra)) in enumerate(self.PORTS.items()):
            peer = f"p{i}"
            _ip("-n", router, "link", "add", peer, "type", "veth", "peer", "name", "eth0",
                "netns", self.ns(name))
            _ip("-n", router, "addr", "add", raddr, "dev", peer)
            _ip("-n", router, "link", "set", peer, "up")
            _ip("-n", self.ns(name), "addr", "add", addr, "dev", "eth0")
            for a in extra:
                _ip("-n", self.ns(name), "addr", "add", a, "dev", "eth0")
            _ip("-n", self.ns(name), "link", "set", "eth0", "up")
            _ip("-n", self.ns(name), "route", "add", "default", "via", raddr.split("/")[0])
        return self

    def serve(self, name: str, *endpoints: str) -> None:
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(name), sys.executable, "-c", SERVER,
                                 *endpoints], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.servers.append(proc)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"endpoint server in {name} did not start")

    def spawn(self, name: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        """Start a real program inside namespace ``name`` (stopped by close())."""
        with open(log, "wb") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns(name), *argv],
                                    stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
        self.servers.append(proc)
        return proc

    def run_py(self, name: str, code: str, *args: str, timeout: float = 20.0) -> bool:
        """Run ``code`` with this Python inside namespace ``name``; True on exit 0."""
        r = subprocess.run(["ip", "netns", "exec", self.ns(name), sys.executable, "-c", code, *args],
                           capture_output=True, timeout=timeout)
        return r.returncode == 0

    def connect(self, name: str, host: str, port: int, timeout: float = 1.0) -> bool:
        """True if a TCP connection from namespace ``name`` gets the ``ok`` answer."""
        r = subprocess.run(["ip", "netns", "exec", self.ns(name), sys.executable, "-c", CLIENT,
                            host, str(port), str(timeout)], capture_output=True, timeout=timeout + 20)
        return r.returncode == 0

    def load_ruleset(self, path: Path) -> None:
        subprocess.run(["ip", "netns", "exec", self.ns("router"), "nft", "-f", str(path)],
                       check=True, capture_output=True, timeout=20)

    def ruleset(self) -> str:
        return subprocess.run(["ip", "netns", "exec", self.ns("router"), "nft", "list", "ruleset"],
                              check=True, capture_output=True, text=True, timeout=20).stdout

    def dropped(self, marker: str = "") -> int:
        """Packets the router's counted drop rules dropped (only the rules whose
        comment holds ``marker``, when given)."""
        total = 0
        for line in self.ruleset().splitlines():
            if " drop " in line and "packets " in line and marker in line:
                total += int(line.split("packets ", 1)[1].split()[0])
        return total

    def close(self) -> None:
        for proc in self.servers:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.wait(timeout=10)
            for f in (proc.stdin, proc.stdout):
                if f:
                    f.close()
        for name in reversed(self.created):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
        self.created.clear()


def namespaces_unavailable() -> str | None:
    """Why namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    for prog in ("ip", "nft"):
        if subprocess.run(["which", prog], capture_output=True).returncode != 0:
            return f"`{prog}` is not installed (make setup installs iproute2 and nftables)"
    name = f"msprobe-{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
    return None
