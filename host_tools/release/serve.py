"""``repo serve``: the repository as static files over HTTP or HTTPS.

Standard-library ``http.server`` with: loopback by default, no directory
listings, no dot-files (temporary files of an ongoing commit), single-range
``Range: bytes=a-b`` requests (resumable device downloads), and an optional TLS
context. Any other static web server works as well.
"""
from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import os
import re
import ssl
import threading
from functools import partial
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .errors import ConfigError
from .fsutil import write_atomic

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RepoRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, no listings, Range support, optional quiet logging."""

    quiet = True

    def list_directory(self, path):  # noqa: ANN001 - stdlib signature
        self.send_error(404, "Not found")
        return None

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        if not self.quiet:
            super().log_message(format, *args)

    def send_head(self):
        parts = self.path.split("?", 1)[0].split("/")
        if any(p.startswith(".") for p in parts if p):
            self.send_error(404, "Not found")
            return None
        rng = self.headers.get("Range")
        if not rng:
            return super().send_head()
        path = self.translate_path(self.path)
        if os.path.isdir(path) or not os.path.isfile(path):
            return super().send_head()
        m = _RANGE.match(rng.strip())
        size = os.path.getsize(path)
        if not m or (m.group(1) == "" and m.group(2) == ""):
            self.send_error(416, "Bad range")
            return None
        if m.group(1) == "":
            start, end = max(0, size - int(m.group(2))), size - 1
        else:
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
        if start >= size or start > end:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return None
        f = open(path, "rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._range_left = end - start + 1
        return f

    def copyfile(self, source, outputfile):
        left = getattr(self, "_range_left", None)
        if left is None:
            return super().copyfile(source, outputfile)
        while left > 0:
            chunk = source.read(min(65536, left))
            if not chunk:
                break
            outputfile.write(chunk)
            left -= len(chunk)
        self._range_left = None


class RepositoryServer:
    """A threaded static server; use as a context manager or start()/stop()."""

    def __init__(
        self,
        directory: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        quiet: bool = True,
    ) -> None:
        if not Path(directory).is_dir():
            raise ConfigError(f"nothing to serve: {directory} is not a directory")
        handler = type("Handler", (RepoRequestHandler,), {"quiet": quiet})
        try:
            self.httpd = http.server.ThreadingHTTPServer(
                (host, port), partial(handler, directory=str(directory))
            )
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.httpd.daemon_threads = True
        self.tls = certfile is not None
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def start(self) -> "RepositoryServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="repo-serve", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "RepositoryServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def ensure_self_signed(tls_dir: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 server certificate for `host` (created once,
    reused). Clients pin ``server.crt`` as their CA."""
    cert_path, key_path = tls_dir / "server.crt", tls_dir / "server.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"medsentry repository {host}")])
    now = dt.datetime.now(dt.timezone.utc)
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    sans = [alt]
    if host != "localhost":
        sans.append(x509.DNSName("localhost"))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_atomic(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        mode=0o600,
    )
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
