"""A small TUF repository builder and a misbehaving static HTTP(S) server for tests.

Shared test API (also used by the release-tooling tests; keep it stable):

``TufRepo(base_dir, *, consistent_snapshot=True, key_type="ed25519",
hash_algorithms=("sha256",), expires=timedelta(days=7), meta_hashes=False)``
    Builds a repository with python-tuf's Metadata API and securesystemslib
    ``CryptoSigner`` keys. Files go to ``base_dir/metadata`` and
    ``base_dir/targets`` (serve ``base_dir``). Version 1 of all four top-level
    roles is written at construction. Key types: ``ed25519``, ``ecdsa``
    (ecdsa-sha2-nistp256), ``rsa`` (rsassa-pss-sha256, 2048 bit).

    - ``add_target(path, data, role="targets", custom=None)`` then
      ``publish()``: bumps every changed targets role, snapshot and timestamp.
    - ``delegate(delegator, name, paths=..., hash_prefixes=..., terminating=,
      threshold=, nkeys=, key_type=)``, ``delegate_succinct(bit_length,
      prefix)``, ``delegate_hash_bins(delegator, nbins_log2)``.
    - ``rotate(role, nkeys=1, threshold=1, key_type=None)`` replaces the keys of
      a top-level role in root; ``publish_root()`` writes the next
      ``N.root.json`` signed by the previous AND new root keys.
    - ``set_expiry(role, when)``; ``bump(role)`` marks a role changed.
    - ``root_path(version)``: bootstrap file for ``init``.
    - Low level for attacks: ``md`` (role -> Metadata), ``signers`` (role ->
      [signer]), ``sign_bytes(role, signers=None)``, ``write_metadata(role,
      data, version=None)``, ``metadata_path(role, version=None)``,
      ``target_url_path(path)``, ``snapshot_files()``.

``TufRepo(..., envelope="simple")`` writes every metadata file (roots
included) as a DSSE ``SimpleEnvelope`` (tuf.api.dsse) instead of the
traditional envelope; ``sign_bytes`` then returns envelope bytes, and
``read_signed(path)`` returns the signed dict of a file of either kind.

``serve(directory, *, https=False)`` (context manager) -> ``RepoServer``
    A loopback static file server (HTTP/1.0, Range supported) on a free port,
    stopped on exit. ``server.url`` is the base URL, ``server.ca_file`` the CA
    certificate (PEM) of the throwaway CA when ``https=True``.
    ``server.misbehave(url_path, mode, **kw)`` makes one path misbehave:
    ``"endless"`` (200 without length, data forever; bounded to 30 s),
    ``"slow"`` (``rate`` bytes/s drip of the real file or of ``data``), ``"stall"``
    (headers, then silence), ``"replace"`` (serve ``data`` instead),
    ``"status"`` (answer ``status``), ``"flip"`` (byte ``at`` flipped in the
    first ``times`` transfers), ``"redirect"`` (to ``location``),
    ``"cut"`` (the real file, Range honoured, but the connection drops after
    ``after`` body bytes, ``times`` times; then served normally),
    ``"chunked"`` (the real file, chunked transfer coding), ``"ignore_range"``
    (the whole file with 200 even for a Range request).
    ``server.requests`` lists the paths asked for; ``server.reset()`` clears
    misbehaviours and the log.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    MetaFile,
    Metadata,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.dsse import SimpleEnvelope
from tuf.api.serialization.json import JSONSerializer

TOP = ("root", "timestamp", "snapshot", "targets")
_SERIALIZER = JSONSerializer(compact=False)


def new_signer(key_type: str = "ed25519") -> CryptoSigner:
    """A fresh in-memory signer of the given type."""
    if key_type == "ed25519":
        return CryptoSigner.generate_ed25519()
    if key_type == "ecdsa":
        return CryptoSigner.generate_ecdsa()
    if key_type == "rsa":
        return CryptoSigner.generate_rsa(scheme="rsassa-pss-sha256", size=2048)
    raise ValueError(f"unknown key type {key_type}")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


class TufRepo:
    """See the module docstring."""

    def __init__(
        self,
        base_dir: str | os.PathLike,
        *,
        consistent_snapshot: bool = True,
        key_type: str = "ed25519",
        hash_algorithms: tuple[str, ...] = ("sha256",),
        expires: dt.timedelta = dt.timedelta(days=7),
        meta_hashes: bool = False,
        envelope: str = "metadata",
    ) -> None:
        if envelope not in ("metadata", "simple"):
            raise ValueError(f"unknown envelope {envelope}")
        self.envelope = envelope
        self.base = Path(base_dir)
        self.metadata_dir = self.base / "metadata"
        self.targets_dir = self.base / "targets"
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        self.key_type = key_type
        self.hash_algorithms = list(hash_algorithms)
        self.expires = expires
        self.meta_hashes = meta_hashes
        self.signers: dict[str, list[Signer]] = {}
        self.md: dict[str, Metadata] = {}
        self.delegator_of: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._written: set[str] = set()
        self._prev_root_signers: list[Signer] = []
        exp = _utcnow() + expires
        root = Root(expires=exp, consistent_snapshot=consistent_snapshot)
        self.md["root"] = Metadata(root)
        for role in TOP:
            s = new_signer(key_type)
            self.signers[role] = [s]
            root.add_key(s.public_key, role)
        self.md["timestamp"] = Metadata(Timestamp(expires=exp))
        self.md["snapshot"] = Metadata(Snapshot(expires=exp))
        self.md["targets"] = Metadata(Targets(expires=exp))
        self._write_root()
        self._write_role("targets")
        self._update_snapshot_meta("targets")
        self._write_role("snapshot")
        self._update_timestamp_meta()
        self._write_role("timestamp")

    # ------------------------------------------------------------ paths
    @property
    def consistent_snapshot(self) -> bool:
        return bool(self.md["root"].signed.consistent_snapshot)

    def metadata_path(self, role: str, version: int | None = None) -> Path:
        name = quote(role, safe="") + ".json"
        if version is not None:
            name = f"{version}.{name}"
        return self.metadata_dir / name

    def root_path(self, version: int = 1) -> Path:
        return self.metadata_path("root", version)

    def target_url_path(self, path: str, algo: str | None = None) -> str:
        """Path under targets/ a client fetches for target `path`."""
        if not self.consistent_snapshot:
            return path
        info = self._target_info(path)
        algo = algo or sorted(info.hashes)[0]
        d, sep, b = path.rpartition("/")
        return f"{d}{sep}{info.hashes[algo]}.{b}"

    def _target_info(self, path: str) -> TargetFile:
        for md in self.md.values():
            if isinstance(md.signed, Targets) and path in md.signed.targets:
                return md.signed.targets[path]
        raise KeyError(path)

    # ------------------------------------------------------------ signing
    def sign_bytes(self, role: str, signers: list[Signer] | None = None) -> bytes:
        md = self.md[role]
        if self.envelope == "simple":
            return self.envelope_bytes(role, signers)
        md.signatures.clear()
        for s in signers if signers is not None else self.signers[role]:
            md.sign(s, append=True)
        return md.to_bytes(_SERIALIZER)

    def envelope_bytes(self, role: str, signers: list[Signer] | None = None, payload_type: str | None = None) -> bytes:
        """`role` as a DSSE SimpleEnvelope signed by `signers` (default: the
        role's keys); `payload_type` overrides the TUF payload type (for
        attacks; the signatures then cover that type)."""
        env = SimpleEnvelope.from_signed(self.md[role].signed)
        if payload_type is not None:
            env.payload_type = payload_type
        for s in signers if signers is not None else self.signers[role]:
            env.sign(s)
        return env.to_bytes()

    def write_metadata(self, role: str, data: bytes, version: int | None = None) -> None:
        self.metadata_path(role, version).write_bytes(data)

    def _write_role(self, role: str) -> None:
        data = self.sign_bytes(role)
        self._written.add(role)
        v = self.md[role].signed.version
        if role == "timestamp":
            self.write_metadata(role, data)
        elif self.consistent_snapshot:
            self.write_metadata(role, data, v)
        else:
            self.write_metadata(role, data)

    def _write_root(self) -> None:
        signers = list(self.signers["root"])
        for s in self._prev_root_signers:
            if s not in signers:
                signers.append(s)
        data = self.sign_bytes("root", signers)
        v = self.md["root"].signed.version
        self.write_metadata("root", data, v)
        self.write_metadata("root", data)

    def _meta(self, role: str) -> MetaFile:
        data = self.metadata_path(role, self.md[role].signed.version if (self.consistent_snapshot and role != "timestamp") else None).read_bytes()
        if self.meta_hashes:
            return MetaFile.from_data(self.md[role].signed.version, data, ["sha256"])
        return MetaFile(version=self.md[role].signed.version)

    def _update_snapshot_meta(self, role: str) -> None:
        self.md["snapshot"].signed.meta[f"{role}.json"] = self._meta(role)

    def _update_timestamp_meta(self) -> None:
        self.md["timestamp"].signed.snapshot_meta = self._meta("snapshot")

    def snapshot_files(self) -> list[str]:
        return sorted(self.md["snapshot"].signed.meta)

    # ------------------------------------------------------------ content
    def add_target(self, path: str, data: bytes, role: str = "targets", custom: dict | None = None) -> TargetFile:
        """Add (or replace) a target file listed by `role`."""
        info = TargetFile.from_data(path, data, self.hash_algorithms)
        if custom is not None:
            info.unrecognized_fields["custom"] = custom
        self.md[role].signed.targets[path] = info
        d, sep, b = path.rpartition("/")
        if self.consistent_snapshot:
            for h in info.hashes.values():
                f = self.targets_dir / f"{d}{sep}{h}.{b}"
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(data)
        f = self.targets_dir / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
        self._dirty.add(role)
        return info

    def _new_delegated(self, name: str) -> Metadata:
        md = Metadata(Targets(expires=_utcnow() + self.expires))
        self.md[name] = md
        self._dirty.add(name)
        return md

    def delegate(
        self,
        delegator: str,
        name: str,
        *,
        paths: list[str] | None = None,
        hash_prefixes: list[str] | None = None,
        terminating: bool = False,
        threshold: int = 1,
        nkeys: int = 1,
        key_type: str | None = None,
    ) -> None:
        """Delegate from `delegator` to a new role `name` with fresh keys."""
        t = self.md[delegator].signed
        if t.delegations is None:
            t.delegations = Delegations(keys={}, roles={})
        if paths is None and hash_prefixes is None:
            paths = ["*"]
        role = DelegatedRole(name, [], threshold, terminating, paths, hash_prefixes)
        t.delegations.roles[name] = role
        self.signers[name] = []
        for _ in range(nkeys):
            s = new_signer(key_type or self.key_type)
            self.signers[name].append(s)
            t.add_key(s.public_key, name)
        self.delegator_of[name] = delegator
        self._new_delegated(name)
        self._dirty.add(delegator)

    def delegate_hash_bins(self, delegator: str, bits: int) -> list[str]:
        """2**bits hash-bin roles (path_hash_prefixes) sharing one key."""
        t = self.md[delegator].signed
        if t.delegations is None:
            t.delegations = Delegations(keys={}, roles={})
        s = new_signer(self.key_type)
        t.delegations.keys[s.public_key.keyid] = s.public_key
        if not 1 <= bits <= 4:
            raise ValueError("bits must be 1..4 (one hex digit of prefixes)")
        n = 2**bits
        per = 16 // n
        names = []
        for i in range(n):
            prefixes = [f"{j:x}" for j in range(i * per, (i + 1) * per)]
            name = f"bin-{i:x}"
            t.delegations.roles[name] = DelegatedRole(name, [s.public_key.keyid], 1, False, None, prefixes)
            self.signers[name] = [s]
            self.delegator_of[name] = delegator
            self._new_delegated(name)
            names.append(name)
        self._dirty.add(delegator)
        return names

    def bin_for(self, path: str) -> str:
        """Hash-bin role (from delegate_hash_bins / delegate_succinct) for `path`."""
        for md in self.md.values():
            d = getattr(md.signed, "delegations", None)
            if d is None:
                continue
            if d.succinct_roles is not None:
                return d.succinct_roles.get_role_for_target(path)
            for r in (d.roles or {}).values():
                if r.path_hash_prefixes is not None and r.is_delegated_path(path):
                    return r.name
        raise KeyError(path)

    def delegate_succinct(self, delegator: str, bit_length: int, prefix: str = "bin") -> list[str]:
        """TAP 15 succinct hash-bin delegation; every bin gets metadata."""
        t = self.md[delegator].signed
        s = new_signer(self.key_type)
        sr = SuccinctRoles([], 1, bit_length, prefix)
        t.delegations = Delegations(keys={}, roles=None, succinct_roles=sr)
        t.add_key(s.public_key)
        names = list(sr.get_roles())
        for name in names:
            self.signers[name] = [s]
            self.delegator_of[name] = delegator
            self._new_delegated(name)
        self._dirty.add(delegator)
        return names

    # ------------------------------------------------------------ changes
    def bump(self, role: str) -> None:
        self._dirty.add(role)

    def set_expiry(self, role: str, when: dt.datetime) -> None:
        self.md[role].signed.expires = when
        if role != "root":
            self._dirty.add(role)

    def rotate(self, role: str, nkeys: int = 1, threshold: int = 1, key_type: str | None = None) -> list[Signer]:
        """Replace all keys of top-level `role` in root (publish_root() next)."""
        root = self.md["root"].signed
        if role == "root" and not self._prev_root_signers:
            self._prev_root_signers = list(self.signers["root"])
        for s in self.signers[role]:
            root.revoke_key(s.public_key.keyid, role)
        self.signers[role] = []
        for _ in range(nkeys):
            s = new_signer(key_type or self.key_type)
            self.signers[role].append(s)
            root.add_key(s.public_key, role)
        root.roles[role].threshold = threshold
        return self.signers[role]

    def publish_root(self) -> int:
        """Write root version+1 (signed by previous and current root keys)."""
        self.md["root"].signed.version += 1
        self._write_root()
        self._prev_root_signers = []
        return self.md["root"].signed.version

    def publish(self, *, snapshot: bool = True, timestamp: bool = True) -> None:
        """Bump and write every changed targets role, then snapshot and timestamp."""
        for role in sorted(self._dirty - {"snapshot", "timestamp", "root"}):
            md = self.md[role]
            if role in self._written:
                md.signed.version += 1
            self._write_role(role)
            self._update_snapshot_meta(role)
        if snapshot:
            self.md["snapshot"].signed.version += 1
            self._write_role("snapshot")
            self._update_timestamp_meta()
        if timestamp:
            self.md["timestamp"].signed.version += 1
            self._write_role("timestamp")
        self._dirty.clear()


def read_signed(path: str | os.PathLike) -> dict:
    """The signed dict of a metadata file, traditional or DSSE."""
    import json

    doc = json.loads(Path(path).read_bytes())
    if "payload" in doc and "signed" not in doc:
        return SimpleEnvelope.from_bytes(Path(path).read_bytes()).get_signed().to_dict()
    return doc["signed"]


# ---------------------------------------------------------------- server


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *a) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = unquote(self.path.split("?", 1)[0])
        self.server.owner.requests.append(path)
        if self.headers.get("Range"):
            self.server.owner.range_requests.append((path, self.headers.get("Range")))
        mb = self.server.owner.behaviour.get(path)
        try:
            if mb is None:
                return self._serve_file(path)
            mode, kw = mb
            getattr(self, "_mb_" + mode)(path, **kw)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass

    def _file(self, path: str) -> Path | None:
        root = self.server.owner.directory
        f = (root / path.lstrip("/")).resolve()
        if root not in f.parents and f != root:
            return None
        return f if f.is_file() else None

    def _serve_file(self, path: str) -> None:
        f = self._file(path)
        if f is None:
            self.send_error(404)
            return
        data = f.read_bytes()
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            data = data[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _mb_endless(self, path: str, chunk: int = 8192, limit_s: float = 30) -> None:
        self.send_response(200)
        self.end_headers()
        block = b"\x7b" * chunk
        end = time.monotonic() + limit_s
        while time.monotonic() < end and not self.server.owner.stopping.is_set():
            self.wfile.write(block)

    def _mb_slow(self, path: str, rate: float = 20, limit_s: float = 30, data: bytes | None = None) -> None:
        f = self._file(path)
        if data is None:
            data = f.read_bytes() if f else b"x" * 100000
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        # Paced by the clock (what is due by now goes out every 10 ms), so the
        # rate holds however slow one write is.
        start = time.monotonic()
        sent = 0
        while sent < len(data) and not self.server.owner.stopping.is_set():
            el = time.monotonic() - start
            if el > limit_s:
                break
            due = min(len(data), int(rate * el) + 1)
            if due > sent:
                self.wfile.write(data[sent:due])
                self.wfile.flush()
                sent = due
            time.sleep(0.01)

    def _mb_stall(self, path: str, limit_s: float = 30) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.flush()
        self.server.owner.stopping.wait(limit_s)

    def _mb_replace(self, path: str, data: bytes = b"") -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _mb_chunked(self, path: str, chunk: int = 700) -> None:
        f = self._file(path)
        data = f.read_bytes() if f else b""
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(data), chunk):
            part = data[i : i + chunk]
            self.wfile.write(b"%x;ext=1\r\n" % len(part) + part + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def _mb_ignore_range(self, path: str) -> None:
        f = self._file(path)
        data = f.read_bytes() if f else b""
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _mb_cut(self, path: str, after: int = 1000, times: int = 1) -> None:
        # The link breaks: the real file (Range honoured) with its full length
        # announced, but the connection closes after `after` body bytes. After
        # `times` such breaks the path is served normally again.
        owner = self.server.owner
        left = owner.cut_left.get(path, times)
        if left <= 0:
            return self._serve_file(path)
        owner.cut_left[path] = left - 1
        f = self._file(path)
        data = f.read_bytes() if f else b""
        start = self._range_start()
        self._part_head(start, len(data))
        self.wfile.write(data[start:start + after])
        self.wfile.flush()
        self.close_connection = True

    def _mb_flip(self, path: str, at: int = 0, times: int = 1) -> None:
        # A bad transfer: the real file (Range honoured) with byte `at` of
        # the file XORed, for the first `times` requests that carry it; then
        # the file as it is.
        owner = self.server.owner
        left = owner.cut_left.get(path, times)
        f = self._file(path)
        data = bytearray(f.read_bytes() if f else b"")
        start = self._range_start()
        if left > 0 and start <= at < len(data):
            owner.cut_left[path] = left - 1
            data[at] ^= 0x01
        self._part_head(start, len(data))
        self.wfile.write(bytes(data[start:]))

    def _range_start(self) -> int:
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            return int(rng[6:-1])
        return 0

    def _part_head(self, start: int, total: int) -> None:
        # 206 with Content-Range from `start` (a Range request), else 200.
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(total - start))
        self.end_headers()

    def _mb_status(self, path: str, status: int = 500) -> None:
        self.send_error(status)

    def _mb_redirect(self, path: str, location: str = "/", status: int = 302) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: "RepoServer"


class RepoServer:
    """Loopback static server; see the module docstring."""

    def __init__(
        self, directory: Path, https: bool = False, workdir: Path | None = None, cert_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
    ) -> None:
        self.directory = Path(directory).resolve()
        self.behaviour: dict[str, tuple[str, dict]] = {}
        self.requests: list[str] = []
        self.cut_left: dict[str, int] = {}
        self.range_requests: list[tuple[str, str]] = []
        self.stopping = threading.Event()
        self.https = https
        self.ca_file: str | None = None
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        if https:
            wd = Path(workdir or self.directory.parent)
            ca, cert, key = make_test_pki(wd, cert_hosts)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
            self.ca_file = str(ca)
        self.port = self._httpd.server_address[1]
        scheme = "https" if https else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def misbehave(self, url_path: str, mode: str, **kw) -> None:
        if not url_path.startswith("/"):
            url_path = "/" + url_path
        self.behaviour[url_path] = (mode, kw)

    def reset(self) -> None:
        self.behaviour.clear()
        self.requests.clear()
        self.cut_left.clear()
        self.range_requests.clear()

    def start(self) -> "RepoServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def serve(
    directory: str | os.PathLike,
    *,
    https: bool = False,
    workdir: str | os.PathLike | None = None,
    cert_hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
) -> Iterator[RepoServer]:
    """Serve `directory` on 127.0.0.1 (free port) until the block exits.
    With https=True the certificate (from a fresh throwaway CA, written to
    `workdir`, default beside `directory`) names `cert_hosts`."""
    srv = RepoServer(Path(directory), https=https, workdir=Path(workdir) if workdir else None, cert_hosts=cert_hosts).start()
    try:
        yield srv
    finally:
        srv.stop()


def make_test_pki(workdir: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> tuple[Path, Path, Path]:
    """Throwaway EC P-256 CA + server certificate for `hosts` (IP addresses
    or DNS names). Returns (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    workdir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "medsentry test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([_san(h) for h in hosts]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = workdir / "ca.pem"
    cert_path = workdir / "server.pem"
    key_path = workdir / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


def _san(host: str):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- device case scripts


def run_device_script(runtime: str, script_text: str, args: list[str], tmp: Path,
                      timeout: float = 120) -> "subprocess.CompletedProcess":
    """Write `script_text` to `tmp` and run it on `runtime` (mpvm.run_on)."""
    from host_tools import mpvm

    script = tmp / "device_script.py"
    script.write_text(script_text)
    return mpvm.run_on(runtime, script, *args, timeout=timeout)


def run_cases(runtime: str, script_text: str, args: list[str], tmp: Path, timeout: float = 120) -> dict[str, str]:
    """run_device_script, then its ``CASE <name> <result>`` lines as
    {name: result}; "_output" holds everything it printed."""
    proc = run_device_script(runtime, script_text, args, tmp, timeout)
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("CASE "):
            _c, name, rest = line.split(" ", 2)
            out[name] = rest
    out["_output"] = proc.stdout + proc.stderr
    return out

