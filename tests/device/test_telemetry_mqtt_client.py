# MQTTClient inbound side over a real TCP connection on loopback: a scripted
# broker (asyncio server in the same runtime) sends CONNACK, SUBACK and
# inbound PUBLISH packets, good, oversized and malformed. Checked: SUBSCRIBE
# bytes, delivery of QoS 0 and QoS 1 messages with PUBACK for QoS 1, the
# bounded inbox counting drops, an oversized PUBLISH skipped without loading
# it, malformed packets ending the connection with MQTTProtocolError.
import os

import devtest
from board.compat import asyncio
from agent.telemetry import mqtt_codec as codec
from agent.telemetry.mqtt import MQTTClient, MQTTProtocolError, MQTTRefused, Supervisor

TOPIC = "medsentry/pump-1/cmd"


async def read_packet(r):
    # The broker side: one whole packet (first byte, body) from the client.
    first = (await r.readexactly(1))[0]
    rl = 0
    shift = 0
    while True:
        b = (await r.readexactly(1))[0]
        rl |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    body = await r.readexactly(rl) if rl else b""
    return first, body


class Broker:
    # Runs script(reader, writer, log) for each connection; log collects the
    # packets the client sent, as (first byte, body).
    def __init__(self, script):
        self.script = script
        self.log = []
        self.server = None
        self.port = 0

    async def _handle(self, r, w):
        try:
            await self.script(self, r, w)
        except (OSError, EOFError):
            pass
        w.close()

    async def start(self):
        for _ in range(30):
            port = 20000 + int.from_bytes(os.urandom(2), "big") % 40000
            try:
                self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)
                self.port = port
                return self
            except OSError:
                pass
        raise OSError("no free loopback port")

    async def stop(self):
        self.server.close()
        await self.server.wait_closed()

    async def expect(self, r, ptype):
        first, body = await read_packet(r)
        self.log.append((first, body))
        assert first >> 4 == ptype, (first, ptype)
        return body


async def handshake(b, r, w, granted=1):
    await b.expect(r, codec.CONNECT)
    w.write(b"\x20\x02\x00\x00")
    await w.drain()
    sub = await b.expect(r, codec.SUBSCRIBE)
    w.write(bytes((0x90, 3)) + sub[:2] + bytes((granted,)))
    await w.drain()


def run_client(script, body, **kw):
    async def go():
        b = await Broker(script).start()
        c = MQTTClient("pump-1", "127.0.0.1", b.port, keepalive=0, connect_timeout_ms=3000, **kw)
        try:
            return await body(b, c)
        finally:
            c.close()
            await b.stop()

    return asyncio.run(go())


async def recv(c, timeout=3):
    return await asyncio.wait_for(c.recv(), timeout)


async def until_first_connect(sup):
    # Run the supervisor until its first successful connect (or its end), stop it.
    task = asyncio.create_task(sup.run())
    await until(lambda: sup.connects == 1 or task.done())
    sup.stop()
    await asyncio.sleep(0)
    return sup


async def until(pred, timeout_ms=3000):
    for _ in range(timeout_ms // 10):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_subscribe_and_inbound_qos0_qos1_with_puback():
    async def script(b, r, w):
        await handshake(b, r, w)
        w.write(codec.encode_publish(TOPIC, b"zero", 0))
        w.write(codec.encode_publish(TOPIC, b"one", 1, False, False, 0x0105))
        await w.drain()
        await b.expect(r, codec.PUBACK)
        await asyncio.sleep(1)

    async def body(b, c):
        await c.connect()
        assert await c.subscribe(TOPIC, 1) == 1
        m0 = await recv(c)
        m1 = await recv(c)
        await until(lambda: len(b.log) == 3)
        return b.log, m0, m1, c.stats

    log, m0, m1, stats = run_client(script, body)
    assert log[1] == (0x82, b"\x00\x01" + b"\x00\x14" + TOPIC.encode() + b"\x01")  # SUBSCRIBE pid 1, QoS 1
    assert m0 == (TOPIC, b"zero", 0, False)
    assert m1 == (TOPIC, b"one", 1, False)
    assert log[2] == (0x40, b"\x01\x05")  # PUBACK for the QoS 1 message only
    assert stats["received"] == 2 and stats["inbound_dropped"] == 0


def test_refused_subscription_raises():
    async def script(b, r, w):
        await handshake(b, r, w, granted=0x80)
        await asyncio.sleep(1)

    async def body(b, c):
        await c.connect()
        e = None
        try:
            await c.subscribe(TOPIC, 1)
        except MQTTRefused as ex:
            e = ex
        return e

    assert isinstance(run_client(script, body), MQTTRefused)


def test_inbox_is_bounded_and_counts_drops():
    async def script(b, r, w):
        await handshake(b, r, w)
        for i in range(5):
            w.write(codec.encode_publish(TOPIC, b"m%d" % i, 1, False, False, 10 + i))
        await w.drain()
        for i in range(5):
            await b.expect(r, codec.PUBACK)
        await asyncio.sleep(1)

    async def body(b, c):
        await c.connect()
        await c.subscribe(TOPIC, 1)
        await until(lambda: len(b.log) == 7)
        got = [c.poll(), c.poll(), c.poll()]
        return b.log, got, c.stats, c.connected

    log, got, stats, connected = run_client(script, body, max_inbox=2)
    # Every message acknowledged, only the first two kept, the rest counted.
    assert [body for first, body in log[2:]] == [bytes((0, 10 + i)) for i in range(5)]
    assert got == [(TOPIC, b"m0", 1, False), (TOPIC, b"m1", 1, False), None]
    assert stats["received"] == 5 and stats["inbound_dropped"] == 3
    assert connected


def test_oversize_publish_is_skipped_without_loading_it():
    # 300 KiB of payload: more than the whole 256 KiB heap of the VM, so it
    # can only pass if the client never holds it.
    size = 300 * 1024

    async def script(b, r, w):
        await handshake(b, r, w)
        hdr = codec.encode_publish(TOPIC, b"", 1, False, False, 77)
        body_len = len(hdr) - 2 + size
        w.write(bytes((hdr[0],)) + codec.encode_remaining_length(body_len) + hdr[2:])
        chunk = bytes(4096)
        left = size
        while left:
            n = min(left, len(chunk))
            w.write(chunk[:n])
            await w.drain()
            left -= n
        w.write(codec.encode_publish(TOPIC, b"after", 0))
        await w.drain()
        await b.expect(r, codec.PUBACK)
        await asyncio.sleep(1)

    async def body(b, c):
        await c.connect()
        await c.subscribe(TOPIC, 1)
        m = await recv(c, 10)
        await until(lambda: len(b.log) == 3)
        return b.log, m, c.stats, c.connected

    log, m, stats, connected = run_client(script, body, max_packet=256)
    assert m == (TOPIC, b"after", 0, False)
    assert log[2] == (0x40, b"\x00\x4d")
    assert stats["oversize_dropped"] == 1 and stats["received"] == 2
    assert connected


MALFORMED = [
    ("QoS 2 PUBLISH", b"\x34\x09\x00\x03a/b\x00\x01hi"),
    ("PUBLISH with empty topic", b"\x30\x04\x00\x00hi"),
    ("QoS 1 PUBLISH packet id 0", b"\x32\x07\x00\x03a/b\x00\x00"),
    ("wildcard topic", b"\x30\x05\x00\x03a/#"),
    ("non-minimal length", b"\x30\x80\x00"),
    ("5-byte remaining length", b"\x30\xff\xff\xff\xff\x7f"),
    ("oversize SUBACK", b"\x90\xe8\x07" + bytes(1000)),
    ("PUBREL", b"\x62\x02\x00\x01"),
    ("second CONNACK", b"\x20\x02\x00\x00"),
]


def test_malformed_inbound_packet_drops_the_connection():
    for why, bad in MALFORMED:
        async def script(b, r, w):
            await handshake(b, r, w)
            w.write(codec.encode_publish(TOPIC, b"ok", 0) + bad + codec.encode_publish(TOPIC, b"never", 0))
            await w.drain()
            await asyncio.sleep(2)

        async def body(b, c):
            await c.connect()
            await c.subscribe(TOPIC, 1)
            err = None
            try:
                await asyncio.wait_for(c.run(20), 3)
            except MQTTProtocolError as e:
                err = e
            return err, c.poll(), c.poll(), c.connected

        err, first, second, connected = run_client(script, body, max_packet=256)
        assert isinstance(err, MQTTProtocolError), why
        assert first == (TOPIC, b"ok", 0, False), why
        assert second is None and not connected, why


def test_refused_connection_raises_refused_with_code():
    # CONNACK "not authorized": MQTTRefused (a transport error, so the
    # supervisor backs off and retries) carrying the return code.
    async def script(b, r, w):
        await b.expect(r, codec.CONNECT)
        w.write(b"\x20\x02\x00\x05")
        await w.drain()
        await asyncio.sleep(1)

    async def body(b, c):
        try:
            await c.connect()
        except MQTTRefused as e:
            return e, c.connected
        return None, c.connected

    e, connected = run_client(script, body)
    assert isinstance(e, OSError) and e.rc == 5 and "not authorized" in str(e)
    assert not connected


def test_supervisor_survives_a_refused_connection():
    # The broker refuses the first CONNECT ("not authorized", as for a
    # certificate the broker does not accept yet) and accepts the second. The
    # supervisor must back off and reconnect; before the fix, building
    # MQTTRefused raised AttributeError on MicroPython, which escaped the
    # supervisor and ended telemetry until the next reboot.
    conns = [0]

    async def script(b, r, w):
        conns[0] += 1
        await b.expect(r, codec.CONNECT)
        w.write(b"\x20\x02\x00\x05" if conns[0] == 1 else b"\x20\x02\x00\x00")
        await w.drain()
        await asyncio.sleep(2)

    async def body(b, c):
        sup = await until_first_connect(Supervisor(c, None, 20, 50))
        return sup.failures, sup.connects, sup.last_error

    failures, connects, last = run_client(script, body)
    assert connects == 1 and failures == 1
    assert isinstance(last, MQTTRefused) and last.rc == 5


def test_supervisor_moves_to_the_next_endpoint():
    # Issue 15: a device given the nodes of a broker cluster moves on when its
    # node is gone (here: a closed port first), and comes back round the list.
    async def script(b, r, w):
        await handshake(b, r, w)
        await asyncio.sleep(2)

    async def body(b, c):
        dead = ("127.0.0.1", 1)
        c.host, c.port = dead
        sup = await until_first_connect(Supervisor(c, None, 20, 50, [dead, ("127.0.0.1", b.port)]))
        return sup.failures, sup.connects, sup.endpoint

    failures, connects, endpoint = run_client(script, body)
    assert failures == 1 and connects == 1 and endpoint == 1


def test_reconnects_reuse_one_packet_buffer():
    # Every connection reads into the buffer the client allocated once: a
    # reconnect after an outage needs no new contiguous 2 KiB (on a fragmented
    # 256 KiB board a fresh one per reconnect ran out: MemoryError, no link).
    async def script(b, r, w):
        await b.expect(r, codec.CONNECT)
        w.write(b"\x20\x02\x00\x00")
        w.write(codec.encode_publish(TOPIC, b"hello %d" % len(b.log), 0, False, False, 0))
        await w.drain()
        await asyncio.sleep(1)

    async def body(b, c):
        got, bufs = [], []
        for _ in range(3):
            await c.connect()
            bufs.append(c._reader._buf)
            got.append(await recv(c))
            c.close()
        return got, bufs, c._rbuf

    got, bufs, rbuf = run_client(script, body)
    assert [m[1] for m in got] == [b"hello 1", b"hello 2", b"hello 3"]
    assert all(buf is rbuf for buf in bufs)
