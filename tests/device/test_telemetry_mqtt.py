# MQTT 3.1.1 packet codec: encode tables (byte-exact), decode tables, and a
# malformed table that must raise MQTTProtocolError. Plus backoff bounds and
# the streaming PacketReader's bounds.
import binascii

import devtest
from board.compat import asyncio
from agent.telemetry import mqtt
from agent.telemetry.mqtt import MQTTProtocolError, codec, supervisor, transport

h = lambda s: binascii.unhexlify(s.replace(" ", ""))


def test_remaining_length_table():
    for n, enc in ((0, "00"), (127, "7f"), (128, "8001"), (16383, "ff7f"), (16384, "808001"),
                   (2097151, "ffff7f"), (2097152, "80808001"), (268435455, "ffffff7f")):
        assert codec.encode_remaining_length(n) == h(enc), n
        assert codec.decode_remaining_length(h(enc)) == (n, len(h(enc)))
    devtest.raises(MQTTProtocolError, codec.encode_remaining_length, 268435456)
    for bad in ("", "80", "ffffff", "ffffffff7f", "8000", "ff8000"):
        devtest.raises(MQTTProtocolError, codec.decode_remaining_length, h(bad))


def test_encode_connect_with_will():
    pkt = codec.encode_connect("pump-0001", 30, False, ("medsentry/pump-0001/status", b"\xa1", 1, True))
    # fixed header, protocol name/level, flags: will retain + will QoS 1 + will flag
    assert pkt[0] == 0x10
    rl, pos = codec.decode_remaining_length(pkt, 1)
    assert rl == len(pkt) - pos
    body = pkt[pos:]
    assert body[:7] == b"\x00\x04MQTT\x04"
    assert body[7] == 0x2C  # 0x20 retain | 0x08 QoS1 | 0x04 will
    assert body[8:10] == b"\x00\x1e"
    assert body[10:] == b"\x00\x09pump-0001" + b"\x00\x1amedsentry/pump-0001/status" + b"\x00\x01\xa1"
    clean = codec.encode_connect("x", 60, True)
    assert clean == h("100d00044d5154540402003c000178")


def test_encode_publish_table():
    assert codec.encode_publish("a/b", b"hi", 0) == h("3007 0003 612f62 6869")
    assert codec.encode_publish("a/b", b"hi", 1, False, False, 10) == h("3209 0003 612f62 000a 6869")
    assert codec.encode_publish("a/b", b"hi", 1, True, True, 10) == h("3b09 0003 612f62 000a 6869")
    big = codec.encode_publish("t", bytes(200), 1, False, False, 1)
    assert big[:3] == h("32 cd01")  # 1+... remaining length 205 as varint
    for args in (("", b""), ("a/+", b""), ("a/#", b""), ("a\x00", b""), ("t" * 300, b"")):
        devtest.raises(MQTTProtocolError, codec.encode_publish, *args)
    devtest.raises(MQTTProtocolError, codec.encode_publish, "t", b"", 2, False, False, 1)
    devtest.raises(MQTTProtocolError, codec.encode_publish, "t", b"", 1, False, False, 0)
    devtest.raises(MQTTProtocolError, codec.encode_publish, "t", b"", 0, False, True, 0)


def test_encode_small_packets():
    assert codec.encode_puback(0x1234) == h("40021234")
    assert codec.encode_subscribe(7, [("medsentry/p/cmd", 1)]) == h("8214 0007 000f") + b"medsentry/p/cmd" + b"\x01"
    assert codec.encode_pingreq() == h("c000")
    assert codec.encode_disconnect() == h("e000")


DECODE = [
    ("20020000", [(codec.CONNACK, False, 0)]),
    ("20020100", [(codec.CONNACK, True, 0)]),
    ("20020005", [(codec.CONNACK, False, 5)]),
    ("4002abcd", [(codec.PUBACK, 0xABCD)]),
    ("9003000701", [(codec.SUBACK, 7, [1])]),
    ("9003000780", [(codec.SUBACK, 7, [0x80])]),
    ("b0020009", [(codec.UNSUBACK, 9)]),
    ("d000", [(codec.PINGRESP,)]),
    ("3007 0003 612f62 6869", [(codec.PUBLISH, "a/b", b"hi", 0, False, False, 0)]),
    ("3309 0003 612f62 0005 6869", [(codec.PUBLISH, "a/b", b"hi", 1, True, False, 5)]),
    ("3a07 0003 612f62 0005", [(codec.PUBLISH, "a/b", b"", 1, False, True, 5)]),
    ("d000 4002 0001 d000", [(codec.PINGRESP,), (codec.PUBACK, 1), (codec.PINGRESP,)]),
]


def test_decode_table():
    for enc, want in DECODE:
        assert codec.decode_all(h(enc)) == want, enc


MALFORMED = [
    ("20", "CONNACK no length"),
    ("2002 00", "CONNACK truncated"),
    ("2003 000000", "CONNACK too long"),
    ("2002 0200", "CONNACK reserved flag"),
    ("2002 0006", "CONNACK bad return code"),
    ("2102 0000", "CONNACK flags"),
    ("4002 0000", "PUBACK pid 0"),
    ("4001 00", "PUBACK short"),
    ("4202 0001", "PUBACK flags"),
    ("9002 0001", "SUBACK no codes"),
    ("9003 000103", "SUBACK bad code"),
    ("9003 000001", "SUBACK pid 0"),
    ("d001 00", "PINGRESP with body"),
    ("3001 00", "PUBLISH topic length truncated"),
    ("3002 0000", "PUBLISH empty topic"),
    ("3004 0005 6162", "PUBLISH topic truncated"),
    ("3005 0004 612f62", "PUBLISH topic longer than the packet"),
    ("3205 0003 612f62", "QoS1 no packet id"),
    ("3207 0003 612f62 0000", "QoS1 packet id 0"),
    ("3407 0003 612f62 0001", "QoS2"),
    ("3607 0003 612f62 0001", "QoS3"),
    ("3805 0003 612f62", "DUP on QoS0"),
    ("3005 0003 612b62", "wildcard in topic"),
    ("3005 0003 61ff62", "topic not UTF-8"),
    ("3005 0003 610062", "NUL in topic"),
    ("5002 0001", "PUBREC"),
    ("6202 0001", "PUBREL"),
    ("7002 0001", "PUBCOMP"),
    ("1000", "CONNECT from server"),
    ("8000", "SUBSCRIBE from server"),
    ("c000", "PINGREQ from server"),
    ("e000", "DISCONNECT from server"),
    ("0000", "type 0"),
    ("f000", "type 15"),
    ("30ffffffff7f", "remaining length 5 bytes"),
    ("3080", "remaining length truncated"),
    ("30ffff7f", "oversize packet"),
    ("4002 0001 40", "trailing partial packet"),
]


def test_malformed_table():
    for enc, why in MALFORMED:
        e = devtest.raises(MQTTProtocolError, codec.decode_all, h(enc))
        assert isinstance(e, ValueError), why


def test_every_truncation_of_a_publish_fails_cleanly():
    pkt = codec.encode_publish("medsentry/p/cmd", b"payload", 1, False, False, 3)
    for i in range(1, len(pkt)):
        devtest.raises(MQTTProtocolError, codec.decode_all, pkt[:i])


def test_error_roots():
    assert issubclass(mqtt.MQTTProtocolError, ValueError)
    assert issubclass(mqtt.MQTTTransportError, OSError)
    assert issubclass(mqtt.MQTTRefused, mqtt.MQTTTransportError)
    assert not issubclass(mqtt.MQTTProtocolError, OSError)


def test_backoff_grows_with_jitter_and_cap():
    for attempt in range(12):
        cap = min(60000, 500 << attempt)
        for _ in range(20):
            d = supervisor.backoff_ms(attempt, 500, 60000)
            assert cap // 2 <= d <= cap, (attempt, d)
    ds = set(supervisor.backoff_ms(5, 500, 60000) for _ in range(20))
    assert len(ds) > 1  # jitter


class _BytesStream:
    # In-memory byte source with the Stream.read_into contract (EOF raises
    # MQTTTransportError), to drive PacketReader on both runtimes.
    def __init__(self, data):
        self.data = data
        self.pos = 0

    async def read_into(self, mv, n):
        if self.pos + n > len(self.data):
            raise mqtt.MQTTTransportError("connection closed by peer")
        mv[0:n] = self.data[self.pos:self.pos + n]
        self.pos += n


def _read_all(data, limit):
    async def go():
        r = transport.PacketReader(_BytesStream(data), max_packet=limit)
        out = []
        while True:
            try:
                out.append(await r.read())
            except mqtt.MQTTTransportError:
                return out, "eof"
            except MQTTProtocolError as e:
                return out, "protocol"

    return asyncio.run(go())


def test_packet_reader_preallocated_buffer():
    stream = (h("20020000") + codec.encode_publish("medsentry/p/cmd", b"x" * 40, 1, False, False, 3)
              + h("4002 0007") + h("d000"))
    pkts, end = _read_all(stream, 64)
    assert end == "eof"
    assert pkts == [(codec.CONNACK, False, 0), (codec.PUBLISH, "medsentry/p/cmd", b"x" * 40, 1, False, False, 3),
                    (codec.PUBACK, 7), (codec.PINGRESP,)]


def test_packet_reader_discards_oversize_publish_and_rejects_oversize_other():
    big = codec.encode_publish("medsentry/p/cmd", bytes(3000), 1, False, False, 9)
    pkts, end = _read_all(big + h("d000"), 64)
    assert end == "eof"
    assert pkts[0][:2] == (codec.PUBLISH, "medsentry/p/cmd") and pkts[0][2] is None and pkts[0][6] == 9
    assert pkts[1] == (codec.PINGRESP,)
    # A SUBACK claiming 1000 bytes is not a PUBLISH: protocol error, nothing read into RAM.
    pkts, end = _read_all(h("90e807") + bytes(1000), 64)
    assert pkts == [] and end == "protocol"
    pkts, end = _read_all(h("30ffffffff7f"), 64)
    assert end == "protocol"
    pkts, end = _read_all(h("4002 00"), 64)
    assert end == "eof"
