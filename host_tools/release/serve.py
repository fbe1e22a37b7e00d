"""``repo serve``: the repository as static files over HTTP or HTTPS.

One asyncio event loop in one thread, whatever the number of clients:
- only regular files inside the served directory: every path component is
  opened with ``O_NOFOLLOW`` relative to the directory, so a symbolic link
  (to ``/etc/passwd``, to ``keys/``, anywhere) is a 404, as are devices, FIFOs,
  directories (no listings) and dot-files (temporary files of a commit);
- every limit explicit (:class:`ServeLimits`): a client has ``head_timeout``
  seconds to send its whole request head (slow or half-sent requests are
  closed), a write that stalls ``idle_timeout`` seconds ends the connection,
  at most ``max_clients`` connections are open; when full, the oldest one still
  sending its request head is dropped for the newcomer (half-open floods cannot
  lock normal clients out), else the newcomer gets a 503;
- GET and HEAD, single-range ``Range: bytes=a-b`` requests (resumable device
  downloads), ``Connection: close`` after each response; optional TLS.

Fine for a lab, a factory line or a small fleet; README "Serving the repository"
shows a production setup with a static web server (nginx) in front of the same
directory.
"""
from __future__ import annotations

import asyncio
import email.utils
import errno
import mimetypes
import os
import re
import ssl
import stat
import sys
import threading
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_REASONS = {200: "OK", 206: "Partial Content", 400: "Bad Request", 404: "Not Found",
            405: "Method Not Allowed", 408: "Request Timeout", 416: "Range Not Satisfiable",
            431: "Request Header Fields Too Large", 503: "Service Unavailable"}
CHUNK = 64 * 1024


@dataclass(frozen=True)
class ServeLimits:
    """Every limit of the server (seconds, counts, bytes)."""

    head_timeout: float = 10.0
    idle_timeout: float = 30.0
    max_clients: int = 256
    max_head: int = 8192

    def validate(self) -> "ServeLimits":
        if self.head_timeout <= 0 or self.idle_timeout <= 0 or not 1 <= self.max_clients <= 10000:
            raise ConfigError("timeouts must be > 0 s and max clients between 1 and 10000")
        return self


class NotServed(Exception):
    """The request path names nothing this server may serve (answered 404)."""


def open_inside(root: Path, url_path: str) -> int:
    """An fd of the regular file `url_path` names inside `root`; raises
    NotServed for anything else (links, dot-files, devices, directories...)."""
    path = urllib.parse.unquote(url_path.split("?", 1)[0].split("#", 1)[0])
    parts = path.split("/")
    if parts[0] != "" or "\0" in path:
        raise NotServed(path)
    parts = parts[1:]
    if not parts or any(p == "" or p.startswith(".") for p in parts):
        raise NotServed(path)
    opened: list[int] = []
    try:
        opened.append(os.open(root, os.O_RDONLY | os.O_DIRECTORY))
        for name in parts[:-1]:
            opened.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=opened[-1]))
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=opened[-1])
    except OSError as exc:
        raise NotServed(f"{path}: {errno.errorcode.get(exc.errno, exc.errno)}") from None
    finally:
        for d in opened:
            os.close(d)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotServed(path)
    return fd


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive for a single-range header; None: unsatisfiable."""
    m = _RANGE.match(header.strip())
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    if m.group(1) == "":
        start, end = max(0, size - int(m.group(2))), size - 1
    else:
        start = int(m.group(1))
        end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if start >= size or start > end:
        return None
    return start, end


class _Client:
    """One connection: read the head under a deadline, answer, close."""

    def __init__(self, server: "RepositoryServer", reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server, self.reader, self.writer = server, reader, writer
        self.peer = (writer.get_extra_info("peername") or ("?",))[0]
        self.method = ""

    async def send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
                 f"Date: {email.utils.formatdate(usegmt=True)}", "Server: medsentry-repo",
                 "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
        if self.method == "HEAD":
            body = b""
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await self.drain()

    async def drain(self) -> None:
        await asyncio.wait_for(self.writer.drain(), self.server.limits.idle_timeout)

    async def error(self, status: int, extra: dict[str, str] | None = None) -> None:
        body = f"{status} {_REASONS.get(status, 'Error')}\n".encode()
        await self.send(status, {"Content-Type": "text/plain", "Content-Length": str(len(body)),
                                 **(extra or {})}, body)

    async def read_head(self) -> tuple[str, str, dict[str, str]] | None:
        try:
            raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), self.server.limits.head_timeout)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError):
            return None
        except (asyncio.LimitOverrunError, ValueError):
            await self.error(431)
            return None
        lines = raw.decode("latin-1").split("\r\n")
        request = lines[0].split(" ")
        if len(request) != 3 or not request[2].startswith("HTTP/1."):
            await self.error(400)
            return None
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return request[0], request[1], headers

    async def run(self) -> None:
        head = await self.read_head()
        self.server.headers_done(self)
        if head is None:
            return
        method, target, headers = head
        self.method = method
        if method not in ("GET", "HEAD"):
            await self.error(405, {"Allow": "GET, HEAD"})
            return self.server.log(self.peer, method, target, 405)
        try:
            fd = open_inside(self.server.directory, target)
        except NotServed:
            await self.error(404)
            return self.server.log(self.peer, method, target, 404)
        with os.fdopen(fd, "rb") as fh:
            await self.answer(fh, method, target, headers)

    async def answer(self, fh, method: str, target: str, headers: dict[str, str]) -> None:  # noqa: ANN001
        size = os.fstat(fh.fileno()).st_size
        status, start, end = 200, 0, size - 1
        if "range" in headers:
            rng = parse_range(headers["range"], size)
            if rng is None:
                await self.error(416, {"Content-Range": f"bytes */{size}"})
                return self.server.log(self.peer, method, target, 416)
            status, (start, end) = 206, rng
        ctype = mimetypes.guess_type(target.split("?", 1)[0])[0] or "application/octet-stream"
        out = {"Content-Type": ctype, "Content-Length": str(end - start + 1), "Accept-Ranges": "bytes"}
        if status == 206:
            out["Content-Range"] = f"bytes {start}-{end}/{size}"
        await self.send(status, out)
        self.server.log(self.peer, method, target, status)
        if method == "HEAD":
            return
        fh.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = fh.read(min(CHUNK, left))
            if not chunk:
                break  # the file shrank: the client sees a short body and retries
            self.writer.write(chunk)
            await self.drain()
            left -= len(chunk)


class RepositoryServer:
    """The static server; use as a context manager or start()/stop(), or
    serve_forever() in the calling thread."""

    def __init__(
        self,
        directory: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        quiet: bool = True,
        limits: ServeLimits | None = None,
    ) -> None:
        if not Path(directory).is_dir():
            raise ConfigError(f"nothing to serve: {directory} is not a directory")
        self.directory = Path(directory)
        self.quiet = quiet
        self.limits = (limits or ServeLimits()).validate()
        self.tls = certfile is not None
        ctx = None
        if self.tls:
            for pem in (certfile, keyfile):
                if pem is not None and not Path(pem).is_file():  # a FIFO would block the TLS library
                    raise ConfigError(f"TLS certificate/key {pem} is not a regular file")
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                ctx.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load the TLS certificate/key {certfile}: {exc}") from None
        self._clients: set[asyncio.Task] = set()
        self._in_head: OrderedDict[_Client, asyncio.Task] = OrderedDict()
        self.refused = 0  # connections answered 503 because max_clients were busy
        self._loop = asyncio.new_event_loop()
        try:
            self._server = self._loop.run_until_complete(asyncio.start_server(
                self._accept, host, port, ssl=ctx, limit=self.limits.max_head,
                ssl_handshake_timeout=self.limits.head_timeout if ctx else None))
        except OSError as exc:
            self._loop.close()
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.server_address = self._server.sockets[0].getsockname()[:2]
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        host = self.server_address[0]
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._clients)

    def log(self, peer: str, method: str, target: str, status: int) -> None:
        if not self.quiet:
            print(f"{peer} {method} {target[:200]!r} {status}", file=sys.stderr, flush=True)

    def headers_done(self, client: _Client) -> None:
        self._in_head.pop(client, None)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        client = _Client(self, reader, writer)
        if len(self._clients) >= self.limits.max_clients:
            if not self._in_head:
                self.refused += 1
                try:
                    await client.error(503)
                except (OSError, asyncio.TimeoutError):
                    pass
                writer.transport.abort()
                return
            _, oldest = self._in_head.popitem(last=False)
            oldest.cancel()
        self._clients.add(task)
        self._in_head[client] = task
        done = False
        try:
            await client.run()
            done = True
            writer.close()  # flush what is buffered, then close (bounded by idle_timeout)
            await asyncio.wait_for(writer.wait_closed(), self.limits.idle_timeout)
        except (OSError, asyncio.TimeoutError, asyncio.CancelledError):
            done = False
        finally:
            self._in_head.pop(client, None)
            self._clients.discard(task)
            if not done:
                writer.transport.abort()

    def serve_forever(self) -> None:
        """Run until stop() (from another thread) or KeyboardInterrupt."""
        try:
            self._loop.run_forever()
        finally:
            self._close()

    def start(self) -> "RepositoryServer":
        self._thread = threading.Thread(target=self.serve_forever, name="repo-serve", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        elif not self._loop.is_closed():
            self._close()

    def _close(self) -> None:
        if self._loop.is_closed():
            return
        self._server.close()
        for task in list(self._clients):
            task.cancel()
        pending = [t for t in self._clients if not t.done()]
        if pending:
            self._loop.run_until_complete(asyncio.wait(pending, timeout=5))
        self._loop.run_until_complete(self._server.wait_closed())
        self._loop.close()

    def __enter__(self) -> "RepositoryServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
