# MQTT transport: open a TLS stream with asyncio on either runtime
# (MicroPython: ssl.SSLContext with DER bytes; CPython: ssl with the same DER
# material converted once to PEM files) and read whole packets into ONE
# preallocated buffer (PacketReader). Network and TLS failures raise
# MQTTTransportError; a packet that breaks the rules raises
# mqtt_codec.MQTTProtocolError.
from board import netguard
from board.compat import IS_MICROPYTHON, asyncio
from agent.telemetry.mqtt_codec import DEFAULT_MAX_PACKET, PUBLISH, MQTTProtocolError, decode_packet


class MQTTTransportError(OSError):
    # Network / TLS failure, timeout, connection closed.
    pass


class TLSConfig:
    # Device identity in DER (as provisioned on flash) + the broker's name.
    def __init__(self, cert_der, key_der, ca_der, server_hostname):
        self.cert_der = cert_der
        self.key_der = key_der
        self.ca_der = ca_der
        self.server_hostname = server_hostname
        self._ctx = None

    def context(self):
        if self._ctx is None:
            self._ctx = _make_context(self)
        return self._ctx


if IS_MICROPYTHON:

    def _make_context(cfg):
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_cert_chain(cfg.cert_der, cfg.key_der)
        ctx.load_verify_locations(cadata=cfg.ca_der)
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

else:

    def _make_context(cfg):
        # CPython's load_cert_chain only takes files: write the DER identity
        # once as PEM into a private temp dir (host-side tests and tools only).
        import ssl
        import tempfile

        from cryptography.hazmat.primitives import serialization

        d = tempfile.mkdtemp(prefix="mqtt-tls-")
        key = serialization.load_der_private_key(bytes(cfg.key_der), None)
        with open(d + "/key.pem", "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        with open(d + "/cert.pem", "w") as f:
            f.write(ssl.DER_cert_to_PEM_cert(bytes(cfg.cert_der)))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_cert_chain(d + "/cert.pem", d + "/key.pem")
        ctx.load_verify_locations(cadata=bytes(cfg.ca_der))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = True
        return ctx


# Errors the socket/TLS layer raises on either runtime. mbedTLS on MicroPython
# reports handshake and verification failures as ValueError or OSError.
_IO_ERRORS = (OSError, ValueError, EOFError)


class Stream:
    # Thin wrapper over an asyncio stream pair, the same on both runtimes.
    def __init__(self, reader, writer):
        self._r = reader
        self._w = writer

    async def read_into(self, mv, n):
        # Fill mv[0:n] exactly; raise MQTTTransportError on EOF/error.
        try:
            if IS_MICROPYTHON:
                got = 0
                while got < n:
                    k = await self._r.readinto(mv[got:n])
                    if not k:
                        raise MQTTTransportError("connection closed by peer")
                    got += k
            else:
                data = await self._r.readexactly(n)
                mv[0:n] = data
        except MQTTTransportError:
            raise
        except _IO_ERRORS as e:
            raise MQTTTransportError("read failed: %r" % (e,))

    async def write(self, data):
        try:
            self._w.write(data)
            await self._w.drain()
        except _IO_ERRORS as e:
            raise MQTTTransportError("write failed: %r" % (e,))

    def close(self):
        try:
            self._w.close()
        except _IO_ERRORS:
            pass


async def open_stream(host, port, tls=None, timeout_ms=10000):
    # TCP (+ TLS with mutual auth and host name check) connection.
    async def _open():
        if tls is None:
            return await asyncio.open_connection(host, port)
        return await asyncio.open_connection(host, port, ssl=tls.context(),
                                             server_hostname=tls.server_hostname)

    try:
        netguard.check(host, port)  # the board's egress allow-list
        r, w = await asyncio.wait_for(_open(), timeout_ms / 1000)
    except asyncio.TimeoutError:
        raise MQTTTransportError("connect to %s:%d timed out" % (host, port))
    except _IO_ERRORS as e:
        raise MQTTTransportError("connect to %s:%d failed: %r" % (host, port, e))
    return Stream(r, w)


class PacketReader:
    # Reads packets from a Stream into ONE preallocated buffer. A PUBLISH
    # larger than the buffer is not loaded: its header is parsed, the rest is
    # read and discarded in buffer-sized chunks, and it is returned with
    # payload None so the client can acknowledge and count it.
    def __init__(self, stream, max_packet=DEFAULT_MAX_PACKET, buf=None):
        # buf: a preallocated buffer of at least max_packet bytes (the client's,
        # reused across connections); None allocates one.
        self._s = stream
        self._buf = buf if buf is not None else bytearray(max_packet)
        self._mv = memoryview(self._buf)
        self._max = max_packet
        self._hdr = bytearray(1)
        self._hmv = memoryview(self._hdr)

    async def read(self):
        s = self._s
        await s.read_into(self._hmv, 1)
        first = self._hdr[0]
        rl = 0
        shift = 0
        for i in range(4):
            await s.read_into(self._hmv, 1)
            b = self._hdr[0]
            rl |= (b & 0x7F) << shift
            if not b & 0x80:
                if i and b == 0:
                    raise MQTTProtocolError("non-minimal remaining length")
                break
            shift += 7
        else:
            raise MQTTProtocolError("remaining length longer than 4 bytes")
        if rl <= self._max:
            await s.read_into(self._mv, rl)
            return decode_packet(first, self._mv[:rl])
        if first >> 4 != PUBLISH:
            raise MQTTProtocolError("packet of %d bytes above limit %d" % (rl, self._max))
        await s.read_into(self._mv, self._max)
        pkt = decode_packet(first, self._mv[:self._max], payload_limit=True)
        left = rl - self._max
        while left:
            k = min(left, self._max)
            await s.read_into(self._mv, k)
            left -= k
        return pkt
