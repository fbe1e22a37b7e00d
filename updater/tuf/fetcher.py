# HTTP/1.1 and HTTPS client for the device, on plain sockets.
#
# Why not micropython-lib `requests` (frozen into the VM): it reads a whole
# response into RAM unless the caller takes `.raw`, has no byte cap, no
# minimum-speed check, follows redirects without a bound, and rejects
# chunked transfer coding in the versions we checked. Streaming with caps is
# the core of the endless-data and slow-retrieval defences, so this module
# owns the socket.
#
# fetch(url, sink, max_length, offset=0):
#   - GET with `Connection: close`; `Range: bytes=N-` when offset > 0 (a 200
#     answer to a ranged request is handled by skipping the first N bytes; a
#     206 answer must cover exactly N..end, per Content-Range and
#     Content-Length, else DownloadError);
#   - a URL with a control, space or non-ASCII character is refused before
#     anything is sent (no split request line, no injected header); callers
#     percent-encode paths (Updater.target_url does);
#   - the body is streamed through one preallocated buffer into
#     sink.write(memoryview) (the sink must copy what it keeps);
#   - the total (offset + body) may not exceed max_length: checked against
#     Content-Length before reading and while reading (endless data);
#   - connect timeout (TCP connect; then TLS handshake plus sending the
#     request, as a deadline for the whole), read timeout (a stalled read),
#     and a minimum average speed enforced after a grace period (slow
#     retrieval, a server dripping bytes just fast enough to beat the read
#     timeout);
#   - redirects (301/302/303/307/308) followed at most max_redirects times,
#     never from https to http; Location may be absolute, network-path
#     ("//host/p"), absolute-path or relative;
#   - HTTP errors raise DownloadHTTPError carrying the status.
# The same file runs on CPython (socket + ssl): the few calls that differ
# are in transport.py.
import socket

from board import netguard
from board.compat import ticks_diff, ticks_ms, const
from updater.tuf.errors import (
    DownloadError,
    DownloadHTTPError,
    DownloadLengthMismatchError,
    SlowRetrievalError,
    TooManyRedirectsError,
)
from updater.tuf.transport import Transport as _Transport, is_timeout as _is_timeout
from updater.tuf.urls import parse_url, resolve_location

_MAX_LINE = const(2048)  # one status/header line
_MAX_HEADER_BYTES = const(16384)  # all header lines together
_MAX_HEADERS = const(64)

def _content_range(v):
    # "bytes A-B/T" or "bytes A-B/*" -> (A, B, T or None); None if malformed.
    if not v.startswith("bytes "):
        return None
    rng, _sep, total = v[6:].strip().partition("/")
    a, _sep, b = rng.partition("-")
    if not (a.isdigit() and b.isdigit()) or int(b) < int(a):
        return None
    if total == "*":
        return int(a), int(b), None
    if not total.isdigit():
        return None
    return int(a), int(b), int(total)


class BytesSink:
    """Collects a body in RAM (small files only; the cap bounds it)."""

    def __init__(self):
        self.buf = bytearray()

    def write(self, mv):
        self.buf.extend(mv)


class _Conn:
    # One HTTP exchange: socket + the shared receive buffer + speed watch.
    def __init__(self, fetcher, url):
        self.f = fetcher
        self.url = url
        self.sock = None
        self.poller = None
        self.mv = fetcher._mv
        self.pos = 0  # next unread byte in buffer
        self.end = 0  # end of valid data in buffer
        self.eof = False
        self.t0 = ticks_ms()
        self.got = 0  # bytes received, headers included (speed check)

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def _fill(self):
        # Read more into the buffer (only when it has been consumed).
        try:
            n = _Transport.recv_into(self.sock, self.poller, self.mv, self.f.read_timeout, self.f.tick)
        except OSError as e:
            if _is_timeout(e):
                raise SlowRetrievalError("read timed out after %d s: %s" % (self.f.read_timeout, self.url))
            raise DownloadError("connection failed while reading %s: %r" % (self.url, e))
        self.pos = 0
        self.end = n
        if n == 0:
            self.eof = True
        self.got += n
        if self.f.tick is not None:
            self.f.tick()
        self._check_speed()

    def _check_speed(self):
        el = ticks_diff(ticks_ms(), self.t0)
        if el > self.f.grace_ms and self.got * 1000 < self.f.min_bytes_per_s * el:
            raise SlowRetrievalError(
                "%d bytes in %d ms is below %d B/s: %s"
                % (self.got, el, self.f.min_bytes_per_s, self.url)
            )

    def readline(self, limit):
        # Bytes up to and including b"\n" (at most `limit` bytes).
        out = bytearray()
        while True:
            if self.pos >= self.end:
                if self.eof:
                    break
                self._fill()
                continue
            mv = self.mv
            i = self.pos
            while i < self.end and mv[i] != 10:
                i += 1
            if i < self.end:
                out.extend(mv[self.pos:i + 1])
                self.pos = i + 1
                break
            out.extend(mv[self.pos:self.end])
            self.pos = self.end
            if len(out) > limit:
                raise DownloadError("header line too long from %s" % self.url)
        if len(out) > limit:
            raise DownloadError("header line too long from %s" % self.url)
        return bytes(out)

    def read_some(self, maxn):
        # memoryview of up to maxn buffered bytes (empty at EOF).
        if self.pos >= self.end:
            if self.eof:
                return self.mv[0:0]
            self._fill()
            if self.eof:
                return self.mv[0:0]
        n = self.end - self.pos
        if n > maxn:
            n = maxn
        out = self.mv[self.pos:self.pos + n]
        self.pos += n
        return out


class Fetcher:
    """Streaming HTTP(S) GET with caps and timeouts (see module comment).

    connect_timeout / read_timeout in seconds; min_bytes_per_s and grace_ms
    set the slow-retrieval rule; cafile: CA certificate (PEM or DER) that
    HTTPS servers must chain to (None: the runtime's default store).
    tick: optional callable run at least every TICK_MS while a transfer
    waits or streams (the device agent feeds its watchdog there); keep
    connect_timeout below the watchdog period, the TCP connect blocks."""

    def __init__(
        self,
        connect_timeout=10,
        read_timeout=10,
        min_bytes_per_s=1024,
        grace_ms=4000,
        max_redirects=4,
        cafile=None,
        buf_size=2048,
        user_agent="medsentry-tuf/1",
        tick=None,
    ):
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.tick = tick
        self.min_bytes_per_s = min_bytes_per_s
        self.grace_ms = grace_ms
        self.max_redirects = max_redirects
        self.cafile = cafile
        self.user_agent = user_agent
        self._buf = bytearray(buf_size)
        self._mv = memoryview(self._buf)

    def fetch_bytes(self, url, max_length):
        """Whole body as bytes (at most max_length)."""
        sink = BytesSink()
        self.fetch(url, sink, max_length)
        return bytes(sink.buf)

    def fetch(self, url, sink, max_length, offset=0):
        """Stream the body of `url` from byte `offset` into sink.write().
        Returns the number of bytes written to the sink."""
        https_seen = False
        for _hop in range(self.max_redirects + 1):
            scheme = parse_url(url)[0]
            if scheme == "https":
                https_seen = True
            elif https_seen:
                raise DownloadError("refusing redirect from https to http: %s" % url)
            result = self._once(url, sink, max_length, offset)
            if not isinstance(result, str):
                return result
            url = result
        raise TooManyRedirectsError("more than %d redirects" % self.max_redirects)

    def _connect(self, scheme, host, port):
        if self.tick is not None:
            self.tick()
        try:
            # The board's egress guard (an OSError: a transport failure here).
            netguard.check(host, port)
            ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except OSError as e:
            raise DownloadError("cannot resolve %s: %r" % (host, e))
        if not ai:
            raise DownloadError("cannot resolve %s" % host)
        af, st, proto = ai[0][0], ai[0][1], ai[0][2]
        s = socket.socket(af, st, proto)
        try:
            s.settimeout(self.connect_timeout)
            s.connect(ai[0][-1])
            s.settimeout(self.read_timeout)
            if scheme == "https":
                s = _Transport.wrap_tls(s, host, self.cafile)
        except OSError as e:
            # (ssl.SSLError is an OSError on CPython; mbedTLS errors are
            # OSError / ValueError on MicroPython)
            s.close()
            if _is_timeout(e):
                raise SlowRetrievalError("connect to %s:%d timed out" % (host, port))
            raise DownloadError("cannot connect to %s:%d: %r" % (host, port, e))
        except ValueError as e:
            s.close()
            raise DownloadError("TLS failure with %s:%d: %r" % (host, port, e))
        return s

    def _once(self, url, sink, max_length, offset):
        scheme, host, port, path = parse_url(url)
        c = _Conn(self, url)
        try:
            c.sock = self._connect(scheme, host, port)
            hosthdr = host if ":" not in host else "[" + host + "]"
            if port != (443 if scheme == "https" else 80):
                hosthdr = "%s:%d" % (hosthdr, port)
            req = "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nAccept-Encoding: identity\r\nConnection: close\r\n" % (
                path,
                hosthdr,
                self.user_agent,
            )
            if offset:
                req += "Range: bytes=%d-\r\n" % offset
            req += "\r\n"
            c.poller = _Transport.start_reading(c.sock)
            try:
                _Transport.send_all(c.sock, c.poller, req.encode(), int(self.connect_timeout * 1000), self.tick)
            except OSError as e:
                if _is_timeout(e):
                    raise SlowRetrievalError("TLS handshake or request send timed out: %s" % url)
                raise DownloadError("cannot send request to %s: %r" % (url, e))
            except ValueError as e:  # mbedTLS failures on MicroPython
                raise DownloadError("TLS failure with %s: %r" % (url, e))
            status, headers = self._read_head(c)
            if status in (301, 302, 303, 307, 308):
                loc = headers.get("location")
                if not loc:
                    raise DownloadHTTPError("redirect without Location from %s" % url, status)
                return resolve_location(url, loc)
            if status == 206 and offset:
                # We asked for "bytes=offset-": the answer must be exactly
                # the rest of the file. A shorter part would end the stream
                # early and look complete to the caller.
                cr = headers.get("content-range", "")
                rng = _content_range(cr)
                cl = headers.get("content-length")
                if (rng is None or rng[0] != offset
                        or (rng[2] is not None and rng[1] + 1 != rng[2])
                        or (cl is not None and cl != str(rng[1] - rng[0] + 1))):
                    raise DownloadError("unexpected Content-Range %r (Content-Length %r) from %s" % (cr, cl, url), status)
                skip = 0
            elif status == 200:
                skip = offset
            else:
                raise DownloadHTTPError("HTTP %d for %s" % (status, url), status)
            return self._read_body(c, headers, sink, max_length, offset, skip)
        finally:
            c.close()

    def _read_head(self, c):
        line = c.readline(_MAX_LINE)
        total = len(line)
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise DownloadError("bad HTTP status line from %s: %r" % (c.url, line[:80]))
        status = int(parts[1])
        headers = {}
        for _i in range(_MAX_HEADERS + 1):
            line = c.readline(_MAX_LINE)
            total += len(line)
            if total > _MAX_HEADER_BYTES:
                raise DownloadError("HTTP headers too large from %s" % c.url)
            if not line:
                raise DownloadError("connection closed in headers from %s" % c.url)
            if line in (b"\r\n", b"\n"):
                return status, headers
            k = line.find(b":")
            if k <= 0:
                raise DownloadError("bad HTTP header from %s" % c.url)
            try:
                name = line[:k].decode().strip().lower()
                value = line[k + 1:].decode().strip()
            except UnicodeError:
                raise DownloadError("non-text HTTP header from %s" % c.url)
            headers[name] = value
        raise DownloadError("too many HTTP headers from %s" % c.url)

    def _read_body(self, c, headers, sink, max_length, offset, skip):
        te = headers.get("transfer-encoding", "").lower()
        chunked = "chunked" in te
        clen = None
        if not chunked and "content-length" in headers:
            v = headers["content-length"]
            if not v.isdigit():
                raise DownloadError("bad Content-Length %r from %s" % (v, c.url))
            clen = int(v)
            # Announced size over the cap: refuse before reading anything.
            if clen - skip + offset > max_length:
                raise DownloadLengthMismatchError(
                    "%s announces %d bytes, more than the %d allowed" % (c.url, clen - skip + offset, max_length)
                )
        written = 0
        remaining_chunk = -1 if chunked else 0
        body_left = clen  # None: until EOF
        while True:
            if chunked:
                if remaining_chunk <= 0:
                    if remaining_chunk == 0:
                        c.readline(_MAX_LINE)  # CRLF after a chunk
                    size_line = c.readline(_MAX_LINE).split(b";")[0].strip()
                    try:
                        remaining_chunk = int(size_line, 16)
                    except ValueError:
                        raise DownloadError("bad chunk size from %s" % c.url)
                    if remaining_chunk == 0:
                        break
                want = remaining_chunk
            elif body_left is not None:
                if body_left == 0:
                    break
                want = body_left
            else:
                want = len(c.mv)
            mv = c.read_some(want)
            n = len(mv)
            if n == 0:
                if chunked or body_left is not None:
                    raise DownloadLengthMismatchError("connection closed early by %s" % c.url)
                break
            if chunked:
                remaining_chunk -= n
            elif body_left is not None:
                body_left -= n
            if skip:
                k = n if n < skip else skip
                mv = mv[k:]
                skip -= k
                n -= k
                if not n:
                    continue
            if offset + written + n > max_length:
                raise DownloadLengthMismatchError(
                    "%s sent more than the %d bytes allowed" % (c.url, max_length)
                )
            sink.write(mv)
            written += n
        return written


class TargetStream:
    """One target's bytes from its mirror, from any offset: what an
    installer streams a package from (Updater.target_stream hands it out).
    Detached from the Updater, so the caller may free the metadata first.
    stream(offset, sink): at most `length` bytes in total; a body that ends
    before `length` raises DownloadLengthMismatchError (a short file is a
    transport failure to retry). Exceptions the sink raises (e.g. "I have
    enough") pass through. `downloaded` counts the bytes received."""

    def __init__(self, fetcher, url, length):
        self.fetcher = fetcher
        self.url = url
        self.length = length
        self.downloaded = 0

    def stream(self, offset, sink):
        counter = _Counting(sink, self)
        self.fetcher.fetch(self.url, counter, self.length, offset)
        if offset + counter.n < self.length:
            raise DownloadLengthMismatchError("%s ended at byte %d of %d" % (self.url, offset + counter.n, self.length))
        return counter.n


class _Counting:
    def __init__(self, sink, owner):
        self.sink = sink
        self.owner = owner
        self.n = 0

    def write(self, mv):
        self.owner.downloaded += len(mv)
        self.n += len(mv)
        self.sink.write(mv)
