# MQTT 3.1.1 client for the device: asyncio, mutual TLS, QoS 0/1.
#
# Why our own and not micropython-lib's umqtt.simple/robust: umqtt is not
# frozen into this VM (and `mip` cannot reach its index here); it is blocking
# (a slow broker would stall sampling), keeps no table of in-flight QoS 1
# messages (so no retransmission with DUP after a reconnect), and its packet
# reader trusts the remaining length it reads. This client is written in the
# style of mqtt_as (asyncio, recovery above the protocol) but smaller, with
# strict bounds on everything it reads.
#
# Layers:
#   1. packet codec: pure functions, bytes in / bytes out (encode_*, decode_packet,
#      decode_all). Every malformed input raises MQTTProtocolError.
#   2. transport shim: open a TLS stream with asyncio on either runtime
#      (MicroPython: ssl.SSLContext with DER bytes; CPython: ssl with the same
#      DER material converted once to PEM files) and read into a preallocated
#      buffer. Network and TLS failures raise MQTTTransportError.
#   3. MQTTClient: CONNECT/CONNACK, keepalive PINGREQ, last will, PUBLISH QoS 0/1
#      with packet-id tracking, retransmission with DUP (after ack_timeout within
#      a connection, and of every unacknowledged message right after a
#      reconnect), PUBACK, SUBSCRIBE/SUBACK, incoming PUBLISH (commands).
#      It raises; it never reconnects by itself.
#   4. Supervisor: reconnects with exponential backoff and jitter.
#
# Session: clean_session = False by default. The delivery guarantee for
# telemetry comes from the flash queue (a record leaves it only on PUBACK), so
# it does not depend on the broker session; the persistent session is kept so
# that QoS 1 commands published to medsentry/<id>/cmd while the device was
# offline are delivered when it reconnects, and so the broker keeps our
# subscription. After a reboot the in-RAM in-flight table is gone; the sender
# re-publishes from the queue head and the collector drops the duplicates.
import os

from board.compat import IS_MICROPYTHON, const, ticks_ms, ticks_diff

try:
    import asyncio
except ImportError:  # very old MicroPython ports
    import uasyncio as asyncio

CONNECT = const(1)
CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
PUBREC = const(5)
PUBREL = const(6)
PUBCOMP = const(7)
SUBSCRIBE = const(8)
SUBACK = const(9)
UNSUBSCRIBE = const(10)
UNSUBACK = const(11)
PINGREQ = const(12)
PINGRESP = const(13)
DISCONNECT = const(14)

MAX_REMAINING = const(268435455)  # 4-byte varint limit of the spec
DEFAULT_MAX_PACKET = const(2048)  # largest packet we accept from the broker
MAX_TOPIC = const(256)

CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class MQTTProtocolError(ValueError):
    # Bad data: malformed or unexpected packet from the peer, bad argument.
    pass


class MQTTTransportError(OSError):
    # Network / TLS failure, timeout, connection closed.
    pass


class MQTTRefused(MQTTTransportError):
    # The broker answered CONNACK with a non-zero return code, or refused a
    # subscription. Retried with backoff like a network failure.
    def __init__(self, msg, rc=None):
        MQTTTransportError.__init__(self, msg)
        self.rc = rc


# ------------------------------------------------------------------ codec


def encode_remaining_length(n):
    if n < 0 or n > MAX_REMAINING:
        raise MQTTProtocolError("remaining length out of range")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_remaining_length(data, pos=0):
    # Returns (value, next_pos). At most 4 bytes; non-minimal encodings of a
    # trailing zero group are rejected as malformed.
    value = 0
    shift = 0
    for i in range(4):
        if pos + i >= len(data):
            raise MQTTProtocolError("truncated remaining length")
        b = data[pos + i]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            if i and b == 0:
                raise MQTTProtocolError("non-minimal remaining length")
            return value, pos + i + 1
        shift += 7
    raise MQTTProtocolError("remaining length longer than 4 bytes")


def _utf8(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    if len(b) > 65535:
        raise MQTTProtocolError("string longer than 65535 bytes")
    return len(b).to_bytes(2, "big") + b


def _check_topic_name(topic):
    if not isinstance(topic, str) or not topic or len(topic) > MAX_TOPIC:
        raise MQTTProtocolError("topic must be 1..%d characters" % MAX_TOPIC)
    if "+" in topic or "#" in topic or "\x00" in topic:
        raise MQTTProtocolError("wildcards / NUL not allowed in a topic name")


def _packet(first, body):
    return bytes((first,)) + encode_remaining_length(len(body)) + body


def encode_connect(client_id, keepalive=60, clean_session=False, will=None, username=None, password=None):
    # will = (topic, payload bytes, qos, retain) or None
    if not 0 <= keepalive <= 65535:
        raise MQTTProtocolError("keepalive out of range")
    flags = 0x02 if clean_session else 0
    payload = [_utf8(client_id)]
    if will is not None:
        wtopic, wmsg, wqos, wretain = will
        _check_topic_name(wtopic)
        if wqos not in (0, 1):
            raise MQTTProtocolError("will QoS must be 0 or 1")
        flags |= 0x04 | (wqos << 3) | (0x20 if wretain else 0)
        payload.append(_utf8(wtopic))
        payload.append(len(wmsg).to_bytes(2, "big") + bytes(wmsg))
    if username is not None:
        flags |= 0x80
        payload.append(_utf8(username))
        if password is not None:
            flags |= 0x40
            payload.append(len(password).to_bytes(2, "big") + bytes(password))
    body = b"\x00\x04MQTT\x04" + bytes((flags,)) + keepalive.to_bytes(2, "big") + b"".join(payload)
    return _packet(CONNECT << 4, body)


def encode_publish(topic, payload, qos=0, retain=False, dup=False, pid=0):
    _check_topic_name(topic)
    if qos not in (0, 1):
        raise MQTTProtocolError("only QoS 0 and 1 are supported")
    if qos == 0 and dup:
        raise MQTTProtocolError("DUP must be 0 for QoS 0")
    first = (PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    vh = _utf8(topic)
    if qos:
        if not 1 <= pid <= 65535:
            raise MQTTProtocolError("packet id must be 1..65535")
        vh += pid.to_bytes(2, "big")
    return _packet(first, vh + bytes(payload))


def encode_puback(pid):
    return bytes((PUBACK << 4, 2)) + pid.to_bytes(2, "big")


def encode_subscribe(pid, topics):
    # topics: list of (filter, qos)
    if not topics:
        raise MQTTProtocolError("SUBSCRIBE needs at least one topic")
    body = pid.to_bytes(2, "big")
    for t, q in topics:
        if q not in (0, 1):
            raise MQTTProtocolError("subscription QoS must be 0 or 1")
        body += _utf8(t) + bytes((q,))
    return _packet((SUBSCRIBE << 4) | 0x02, body)


def encode_pingreq():
    return b"\xc0\x00"


def encode_disconnect():
    return b"\xe0\x00"


def _decode_topic(body, pos):
    if pos + 2 > len(body):
        raise MQTTProtocolError("truncated topic length")
    n = (body[pos] << 8) | body[pos + 1]
    pos += 2
    if n == 0 or n > MAX_TOPIC:
        raise MQTTProtocolError("topic length %d out of range" % n)
    if pos + n > len(body):
        raise MQTTProtocolError("truncated topic")
    try:
        topic = str(bytes(body[pos:pos + n]), "utf-8")
    except UnicodeError:
        raise MQTTProtocolError("topic is not UTF-8")
    if "+" in topic or "#" in topic or "\x00" in topic:
        raise MQTTProtocolError("wildcard or NUL in a received topic")
    return topic, pos + n


def decode_packet(first, body, payload_limit=None):
    # Decode one packet sent by a server, given its first byte and exactly
    # its remaining-length bytes. Returns a tuple whose first item is the
    # packet type:
    #   (CONNACK, session_present, rc)
    #   (PUBLISH, topic, payload, qos, retain, dup, pid)
    #   (PUBACK, pid)  (UNSUBACK, pid)  (SUBACK, pid, [codes])  (PINGRESP,)
    # If payload_limit is given and body is only the first part of a longer
    # PUBLISH, the payload is returned as None (see PacketReader).
    ptype = first >> 4
    flags = first & 0x0F
    n = len(body)
    if ptype == PUBLISH:
        qos = (flags >> 1) & 3
        dup = bool(flags & 0x08)
        if qos > 1:
            raise MQTTProtocolError("QoS %d PUBLISH not supported" % qos)
        if qos == 0 and dup:
            raise MQTTProtocolError("DUP set on a QoS 0 PUBLISH")
        topic, pos = _decode_topic(body, 0)
        pid = 0
        if qos:
            if pos + 2 > n:
                raise MQTTProtocolError("truncated packet id")
            pid = (body[pos] << 8) | body[pos + 1]
            pos += 2
            if pid == 0:
                raise MQTTProtocolError("packet id 0")
        payload = None if payload_limit is not None else bytes(body[pos:])
        return (PUBLISH, topic, payload, qos, bool(flags & 1), dup, pid)
    if flags != 0:
        raise MQTTProtocolError("reserved flags set on packet type %d" % ptype)
    if ptype == CONNACK:
        if n != 2:
            raise MQTTProtocolError("CONNACK length %d" % n)
        if body[0] & 0xFE:
            raise MQTTProtocolError("reserved CONNACK flags")
        if body[1] > 5:
            raise MQTTProtocolError("CONNACK return code %d" % body[1])
        return (CONNACK, bool(body[0] & 1), body[1])
    if ptype in (PUBACK, UNSUBACK):
        if n != 2:
            raise MQTTProtocolError("ack length %d" % n)
        pid = (body[0] << 8) | body[1]
        if pid == 0:
            raise MQTTProtocolError("packet id 0")
        return (ptype, pid)
    if ptype == SUBACK:
        if n < 3:
            raise MQTTProtocolError("SUBACK too short")
        pid = (body[0] << 8) | body[1]
        if pid == 0:
            raise MQTTProtocolError("packet id 0")
        codes = list(bytes(body[2:]))
        for c in codes:
            if c not in (0, 1, 2, 0x80):
                raise MQTTProtocolError("SUBACK return code %d" % c)
        return (SUBACK, pid, codes)
    if ptype == PINGRESP:
        if n:
            raise MQTTProtocolError("PINGRESP with a body")
        return (PINGRESP,)
    if ptype in (PUBREC, PUBREL, PUBCOMP):
        raise MQTTProtocolError("QoS 2 flow not supported")
    raise MQTTProtocolError("packet type %d is not sent by a server" % ptype)


def decode_all(data, max_packet=DEFAULT_MAX_PACKET):
    # Decode a buffer holding whole packets back to back (tests, fuzzing).
    out = []
    pos = 0
    while pos < len(data):
        first = data[pos]
        rl, pos = decode_remaining_length(data, pos + 1)
        if rl > max_packet:
            raise MQTTProtocolError("packet of %d bytes above limit %d" % (rl, max_packet))
        if pos + rl > len(data):
            raise MQTTProtocolError("truncated packet")
        out.append(decode_packet(first, data[pos:pos + rl]))
        pos += rl
    return out


# ------------------------------------------------------------------ transport


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
    def __init__(self, stream, max_packet=DEFAULT_MAX_PACKET):
        self._s = stream
        self._buf = bytearray(max_packet)
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


# ------------------------------------------------------------------ client


class MQTTClient:
    def __init__(self, client_id, host, port, tls=None, keepalive=60, clean_session=False, will=None,
                 max_packet=DEFAULT_MAX_PACKET, max_inflight=8, ack_timeout_ms=10000,
                 connect_timeout_ms=10000, on_message=None, on_puback=None):
        self.client_id = client_id
        self.host = host
        self.port = port
        self.tls = tls
        self.keepalive = keepalive
        self.clean_session = clean_session
        self.will = will
        self.max_packet = max_packet
        self.max_inflight = max_inflight
        self.ack_timeout_ms = ack_timeout_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.on_message = on_message  # fn(topic, payload or None, retain)
        self.on_puback = on_puback  # fn(pid)
        self._stream = None
        self._reader = None
        self._rtask = None
        self._error = None
        self._lock = asyncio.Lock()
        self._room = asyncio.Event()
        self._pid = 0
        # In-flight QoS 1 publishes: pid -> [topic, payload, retain, sent_ms];
        # _order keeps send order (MicroPython dicts are unordered).
        self._inflight = {}
        self._order = []
        self._suback = {}
        self._sub_event = asyncio.Event()
        self.connected = False
        self.stats = {"sent": 0, "acked": 0, "retransmitted": 0, "received": 0,
                      "oversize_dropped": 0, "unknown_acks": 0, "pings": 0}
        self._last_rx = 0
        self._last_tx = 0

    # -- helpers

    def _next_pid(self):
        for _ in range(65535):
            self._pid = self._pid % 65535 + 1
            if self._pid not in self._inflight and self._pid not in self._suback:
                return self._pid
        raise MQTTProtocolError("no free packet id")

    async def _send(self, data):
        if self._stream is None:
            raise MQTTTransportError("not connected")
        async with self._lock:
            await self._stream.write(data)
        self._last_tx = ticks_ms()

    def inflight(self):
        return len(self._inflight)

    # -- connection

    async def connect(self):
        # Open TLS, CONNECT, wait for CONNACK, then re-send every
        # unacknowledged QoS 1 message with DUP set. Returns session_present.
        self.close()
        self._error = None
        stream = await open_stream(self.host, self.port, self.tls, self.connect_timeout_ms)
        self._stream = stream
        reader = PacketReader(stream, self.max_packet)

        async def handshake():
            # On MicroPython the TLS handshake runs inside this first write.
            await stream.write(encode_connect(self.client_id, self.keepalive, self.clean_session, self.will))
            return await reader.read()

        try:
            try:
                pkt = await asyncio.wait_for(handshake(), self.connect_timeout_ms / 1000)
            except asyncio.TimeoutError:
                raise MQTTTransportError("no TLS handshake + CONNACK within %d ms" % self.connect_timeout_ms)
            if pkt[0] != CONNACK:
                raise MQTTProtocolError("expected CONNACK, got packet type %d" % pkt[0])
            if pkt[2] != 0:
                raise MQTTRefused("connection refused: %s" % CONNACK_REASONS.get(pkt[2], pkt[2]), pkt[2])
        except BaseException:
            self.close()
            raise
        self._reader = reader
        self._last_rx = self._last_tx = ticks_ms()
        self._rtask = asyncio.create_task(self._read_loop())
        # Retransmit in order, DUP = 1, same packet ids (MQTT 3.1.1 4.4),
        # BEFORE publish() is allowed again, so nothing new overtakes them.
        try:
            for pid in list(self._order):
                e = self._inflight.get(pid)
                if e is not None:
                    await self._send(encode_publish(e[0], e[1], 1, e[2], True, pid))
                    e[3] = ticks_ms()
                    self.stats["retransmitted"] += 1
        except BaseException:
            self.close()
            raise
        self.connected = True
        return pkt[1]

    def close(self):
        self.connected = False
        if self._rtask is not None:
            try:
                self._rtask.cancel()
            except (RuntimeError, ValueError):
                pass
            self._rtask = None
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._room.set()  # wake publishers so they see the disconnect
        self._sub_event.set()

    async def disconnect(self):
        try:
            if self._stream is not None:
                await self._send(encode_disconnect())
        except MQTTTransportError:
            pass
        self.close()

    # -- reading

    async def _read_loop(self):
        try:
            while True:
                pkt = await self._reader.read()
                self._last_rx = ticks_ms()
                await self._dispatch(pkt)
        except (MQTTProtocolError, MQTTTransportError) as e:
            self._error = e
        except asyncio.CancelledError:
            pass

    async def _dispatch(self, pkt):
        t = pkt[0]
        if t == PUBACK:
            pid = pkt[1]
            if pid in self._inflight:
                del self._inflight[pid]
                self._order.remove(pid)
                self.stats["acked"] += 1
                self._room.set()
                if self.on_puback is not None:
                    self.on_puback(pid)
            else:
                self.stats["unknown_acks"] += 1
        elif t == PUBLISH:
            _, topic, payload, qos, retain, dup, pid = pkt
            self.stats["received"] += 1
            if payload is None:
                self.stats["oversize_dropped"] += 1
            if self.on_message is not None:
                try:
                    self.on_message(topic, payload, retain)
                except ValueError:
                    # A bad command is the handler's business; it is still
                    # acknowledged so the broker does not redeliver it forever.
                    pass
            if qos == 1:
                await self._send(encode_puback(pid))
        elif t == SUBACK:
            if pkt[1] in self._suback:
                self._suback[pkt[1]] = pkt[2]
                self._sub_event.set()
        elif t == CONNACK:
            raise MQTTProtocolError("unexpected CONNACK")
        # PINGRESP / UNSUBACK: receipt time already recorded.

    # -- operations

    async def publish(self, topic, payload, qos=0, retain=False):
        # QoS 0: send. QoS 1: wait for room in the in-flight window, send,
        # return the packet id (the PUBACK arrives through on_puback).
        if not self.connected:
            raise MQTTTransportError("not connected")
        if qos == 0:
            await self._send(encode_publish(topic, payload, 0, retain))
            self.stats["sent"] += 1
            return None
        while len(self._inflight) >= self.max_inflight:
            self._room.clear()
            await self._room.wait()
            if not self.connected:
                raise MQTTTransportError("connection lost while waiting for a PUBACK")
        pid = self._next_pid()
        pkt = encode_publish(topic, payload, 1, retain, False, pid)
        self._inflight[pid] = [topic, bytes(payload), retain, ticks_ms()]
        self._order.append(pid)
        # Tracked before sending. If the write fails the message stays in the
        # in-flight table and is retransmitted with DUP after the reconnect
        # (QoS 1 "accepted for delivery"); the failure ends this connection
        # and surfaces from run().
        try:
            await self._send(pkt)
        except MQTTTransportError as e:
            self._error = e
            self.close()
            return pid
        self.stats["sent"] += 1
        return pid

    async def subscribe(self, topic, qos=1, timeout_ms=10000):
        pid = self._next_pid()
        self._suback[pid] = None
        try:
            await self._send(encode_subscribe(pid, [(topic, qos)]))
            t0 = ticks_ms()
            while self._suback[pid] is None:
                if not self.connected or self._error is not None:
                    raise MQTTTransportError("connection lost during SUBSCRIBE")
                if ticks_diff(ticks_ms(), t0) > timeout_ms:
                    raise MQTTTransportError("no SUBACK within %d ms" % timeout_ms)
                self._sub_event.clear()
                try:
                    await asyncio.wait_for(self._sub_event.wait(), 0.2)
                except asyncio.TimeoutError:
                    pass
            codes = self._suback[pid]
        finally:
            del self._suback[pid]
        if codes[0] == 0x80:
            raise MQTTRefused("subscription to %s refused" % topic)
        return codes[0]

    async def run(self, poll_ms=100):
        # Supervise one connection: keepalive pings, dead-peer detection,
        # retransmission on ack timeout. Returns never; raises the reason the
        # connection ended (MQTTTransportError / MQTTProtocolError).
        ka_ms = self.keepalive * 1000
        try:
            while True:
                await asyncio.sleep(poll_ms / 1000)
                if self._error is not None:
                    raise self._error
                if not self.connected:
                    raise MQTTTransportError("connection closed")
                now = ticks_ms()
                if ka_ms:
                    if ticks_diff(now, self._last_rx) > ka_ms * 3 // 2:
                        raise MQTTTransportError("broker silent for %d ms" % ticks_diff(now, self._last_rx))
                    if ticks_diff(now, self._last_tx) >= ka_ms // 2:
                        await self._send(encode_pingreq())
                        self.stats["pings"] += 1
                if self.ack_timeout_ms:
                    for pid in list(self._order):
                        e = self._inflight.get(pid)
                        if e is not None and ticks_diff(now, e[3]) > self.ack_timeout_ms:
                            await self._send(encode_publish(e[0], e[1], 1, e[2], True, pid))
                            e[3] = ticks_ms()
                            self.stats["retransmitted"] += 1
        finally:
            self.close()


# ------------------------------------------------------------------ supervisor


def backoff_ms(attempt, base_ms=500, max_ms=60000):
    # Exponential backoff with jitter: a random delay in [cap/2, cap], where
    # cap = min(max_ms, base_ms * 2^attempt).
    cap = base_ms << min(attempt, 20)
    if cap > max_ms:
        cap = max_ms
    r = int.from_bytes(os.urandom(2), "big")
    return cap // 2 + (cap - cap // 2) * r // 65535


class Supervisor:
    # Keeps an MQTTClient connected: connect, on_connected(client), run until
    # it raises, back off, reconnect. Recovery lives here, not in the client.
    def __init__(self, client, on_connected=None, base_ms=500, max_ms=60000):
        self.client = client
        self.on_connected = on_connected
        self.base_ms = base_ms
        self.max_ms = max_ms
        self.attempt = 0
        self.connects = 0
        self.failures = 0
        self.last_error = None
        self._stop = False

    def stop(self):
        self._stop = True
        self.client.close()

    async def run(self):
        while not self._stop:
            try:
                await self.client.connect()
                self.connects += 1
                self.attempt = 0
                if self.on_connected is not None:
                    await self.on_connected(self.client)
                await self.client.run()
            except (OSError, ValueError) as e:
                # MQTTTransportError / MQTTProtocolError from the client, or a
                # flash/data error from on_connected: back off and retry.
                self.last_error = e
                self.failures += 1
            except MemoryError as e:
                # The TLS handshake needs tens of KiB of heap at once; after a
                # collection a later attempt may fit. Back off like a failure.
                self.last_error = e
                self.failures += 1
                import gc

                gc.collect()
            finally:
                self.client.close()
            if self._stop:
                break
            delay = backoff_ms(self.attempt, self.base_ms, self.max_ms)
            self.attempt += 1
            await asyncio.sleep(delay / 1000)
