# The socket and TLS calls of the device HTTP client (fetcher.py) that
# differ between MicroPython and CPython, with the waits that keep a
# watchdog fed and bound every step by a deadline.
import socket

from board.compat import IS_MICROPYTHON, ticks_diff, ticks_ms, const

TICK_MS = const(500)  # longest wait between two calls of Fetcher.tick

# errno values that mean "timed out" on either runtime (110/11 Linux,
# -0x6800/-0x6900 mbedTLS timeout / want-read, 116 lwIP ETIMEDOUT on boards)
_TIMEOUT_ERRNOS = (110, 11, 116, -26624, -26880)


class Transport:
    """Differences between MicroPython and CPython sockets/TLS."""

    @staticmethod
    def wrap_tls(sock, host, cafile):
        import ssl

        if IS_MICROPYTHON:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.verify_mode = ssl.CERT_REQUIRED
            if cafile:
                ctx.load_verify_locations(cadata=ca_der(cafile))
            # The handshake is not done here: a blocking mbedTLS handshake
            # bounds each read by the socket timeout but not the whole, so
            # a relay dripping the genuine server's bytes could hold it for
            # hours (slow retrieval). It runs inside send_all() instead, on
            # the non-blocking socket, under a deadline.
            sock.setblocking(False)
            return ctx.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
        # CPython's do_handshake() treats the socket timeout as a deadline
        # for the whole handshake, so the blocking handshake is bounded.
        ctx = ssl.create_default_context(cafile=cafile)
        return ctx.wrap_socket(sock, server_hostname=host)

    @staticmethod
    def start_reading(sock):
        # MicroPython's stream readinto() keeps reading until the buffer is
        # full, so a server dripping bytes would never trip the speed check
        # (and a partial read would be lost in a timeout). There the socket
        # goes non-blocking before the request is sent, and the socket is
        # waited for with poll(); readinto() then returns what is there.
        if not IS_MICROPYTHON:
            return None
        import select

        sock.setblocking(False)
        p = select.poll()
        p.register(sock, select.POLLIN)
        return p

    @staticmethod
    def recv_into(sock, poller, mv, timeout_s, tick=None):
        # Waits in slices of TICK_MS, calling tick() between them, so a
        # caller with a watchdog stays alive through a long read timeout.
        t0 = ticks_ms()
        limit = int(timeout_s * 1000)
        if poller is None:
            if tick is None:
                return sock.recv_into(mv)
            sock.settimeout(min(timeout_s, TICK_MS / 1000))
            try:
                while True:
                    try:
                        return sock.recv_into(mv)
                    except socket.timeout:
                        if ticks_diff(ticks_ms(), t0) >= limit:
                            raise
                        tick()
            finally:
                sock.settimeout(timeout_s)
        while True:
            n = sock.readinto(mv)
            if n is not None:
                return n
            # No data buffered (socket or TLS layer): wait for more.
            left = limit - ticks_diff(ticks_ms(), t0)
            if left <= 0:
                raise OSError(110)  # ETIMEDOUT
            if not poller.poll(min(left, TICK_MS)) and tick is not None:
                tick()

    @staticmethod
    def send_all(sock, poller, data, limit_ms, tick=None):
        # Send the request; on MicroPython this also completes the TLS
        # handshake (see wrap_tls). Both must be over within limit_ms in
        # total, however slowly the peer answers.
        if poller is None:
            sock.sendall(data)
            return
        import select

        t0 = ticks_ms()
        mv = memoryview(data)
        poller.modify(sock, select.POLLIN | select.POLLOUT)
        try:
            while mv:
                n = sock.write(mv)
                if n:
                    mv = mv[n:]
                    continue
                # None: would block (socket buffer, or the TLS layer waits
                # for handshake bytes)
                left = limit_ms - ticks_diff(ticks_ms(), t0)
                if left <= 0:
                    raise OSError(110)  # ETIMEDOUT
                poller.poll(min(left, TICK_MS))
                if tick is not None:
                    tick()
        finally:
            poller.modify(sock, select.POLLIN)


def ca_der(path):
    # mbedTLS (MicroPython) takes DER via cadata; accept a PEM file (one
    # certificate) too. Imported here: the agent unloads updater.crypto
    # between checks, the fetcher stays.
    from updater.crypto.der import pem_decode

    with open(path, "rb") as f:
        data = f.read()
    if b"-----BEGIN" not in data:
        return data
    return pem_decode(data, "CERTIFICATE")


def is_timeout(e):
    if not IS_MICROPYTHON:
        if isinstance(e, socket.timeout):
            return True
    args = getattr(e, "args", ())
    return bool(args) and args[0] in _TIMEOUT_ERRNOS
