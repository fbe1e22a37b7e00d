# MQTT 3.1.1 client over one connection: CONNECT/CONNACK, keepalive PINGREQ,
# last will, PUBLISH QoS 0/1 with packet-id tracking, retransmission with DUP
# (after ack_timeout within a connection, and of every unacknowledged message
# right after a reconnect), PUBACK, SUBSCRIBE/SUBACK, inbound PUBLISH QoS 0/1
# (PUBACK for QoS 1) into a bounded inbox. It raises; it never reconnects by
# itself (mqtt.Supervisor does, as umqtt.robust over umqtt.simple).
#
# Inbound bounds (the same as for every read): a packet above max_packet is
# refused (connection dropped) unless it is a PUBLISH, which is skipped in
# buffer-sized chunks, acknowledged and counted ("oversize_dropped"); a
# malformed packet ends the connection with MQTTProtocolError; at most
# max_inbox messages wait in the inbox, a message that finds it full is
# acknowledged and counted ("inbound_dropped"), never queued.
from board.compat import asyncio, ticks_ms, ticks_diff
from agent.telemetry.mqtt_codec import (CONNACK, CONNACK_REASONS, DEFAULT_MAX_PACKET, PUBACK, PUBLISH, SUBACK,
                                        MQTTProtocolError, encode_connect, encode_disconnect, encode_pingreq,
                                        encode_puback, encode_publish, encode_subscribe)
from agent.telemetry.mqtt_transport import MQTTTransportError, PacketReader, open_stream


class MQTTRefused(MQTTTransportError):
    # The broker answered CONNACK with a non-zero return code, or refused a
    # subscription. Retried with backoff like a network failure.
    def __init__(self, msg, rc=None):
        super().__init__(msg)
        self.rc = rc


class MQTTClient:
    def __init__(self, client_id, host, port, tls=None, keepalive=60, clean_session=False, will=None,
                 max_packet=DEFAULT_MAX_PACKET, max_inflight=8, ack_timeout_ms=10000,
                 connect_timeout_ms=10000, max_inbox=4, on_puback=None):
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
        self.max_inbox = max_inbox
        self.on_puback = on_puback  # fn(pid)
        self._stream = None
        self._reader = None
        # The packet buffer, allocated once and reused by every connection: a
        # new one per reconnect needs another contiguous 2 KiB while the old
        # one may still be referenced, which a fragmented 256 KiB heap after a
        # broker outage does not always have (MemoryError, board stays off).
        self._rbuf = bytearray(max_packet)
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
        # Inbound messages (topic, payload, qos, retain), oldest first; kept
        # across reconnects.
        self._inbox = []
        self._inbox_event = asyncio.Event()
        self.connected = False
        self.stats = {"sent": 0, "acked": 0, "retransmitted": 0, "received": 0,
                      "oversize_dropped": 0, "inbound_dropped": 0, "unknown_acks": 0, "pings": 0}
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
        reader = PacketReader(stream, self.max_packet, self._rbuf)

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
        self._reader = None
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
        reader = self._reader  # this connection's (close() lets go of it)
        try:
            while True:
                pkt = await reader.read()
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
            elif len(self._inbox) >= self.max_inbox:
                self.stats["inbound_dropped"] += 1
            else:
                self._inbox.append((topic, payload, qos, retain))
                self._inbox_event.set()
            # Acknowledged in every case, so the broker does not redeliver a
            # message the device has refused forever.
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

    def pending(self):
        # Inbound messages waiting in the inbox.
        return len(self._inbox)

    def poll(self):
        # The oldest inbound message (topic, payload, qos, retain), or None.
        if self._inbox:
            return self._inbox.pop(0)
        return None

    async def recv(self):
        # Wait for the next inbound message (across reconnects).
        while not self._inbox:
            self._inbox_event.clear()
            await self._inbox_event.wait()
        return self._inbox.pop(0)

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
