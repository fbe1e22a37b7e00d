"""Hypothesis (CPython) against the device parsers in agent/telemetry: the MQTT
packet decoder (pure and streaming), the CBOR decoder and the COSE parser
survive arbitrary and mutated input with their one clean error class."""
from __future__ import annotations

import asyncio

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.telemetry import cbor, cose
from agent.telemetry.mqtt import codec, transport
from agent.telemetry.cbor import CBORDecodeError
from agent.telemetry.cose import CoseError
from agent.telemetry.mqtt import MQTTProtocolError, MQTTTransportError

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SEALER = cose.Sealer(b"k" * 8, bytes(range(16)), bytes(range(1, 14)))
TOPIC = "medsentry/pump-1/telemetry"
GOOD = SEALER.seal(300, cbor.dumps({"t": 1, "seq": 300, "hr": 70}), TOPIC)

cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=False) | st.binary(max_size=40) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8) | st.integers(-100, 100),
                                                                 inner, max_size=5),
    max_leaves=20,
)


def mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    b = bytearray(data)
    for pos, val in edits:
        if not b:
            break
        op = val % 3
        i = pos % len(b)
        if op == 0:
            b[i] = val & 0xFF
        elif op == 1:
            del b[i]
        else:
            b.insert(i, val & 0xFF)
    return bytes(b)


edits = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 767)), min_size=1, max_size=6)


# -- CBOR ---------------------------------------------------------------------
@FAST
@given(st.binary(max_size=300))
def test_cbor_arbitrary_bytes(data):
    try:
        cbor.loads(data)
    except CBORDecodeError:
        pass


@FAST
@given(cbor_values)
def test_cbor_round_trip_and_cbor2_agrees(value):
    enc = cbor.dumps(value)
    assert cbor.loads(enc) == value
    assert cbor2.loads(enc) == value  # our encoding is valid CBOR for an independent decoder


@FAST
@given(cbor_values, edits)
def test_cbor_mutated(value, ed):
    try:
        cbor.loads(mutate(cbor.dumps(value), ed))
    except CBORDecodeError:
        pass


# -- COSE ---------------------------------------------------------------------
@FAST
@given(st.binary(max_size=300))
def test_cose_arbitrary_bytes(data):
    try:
        SEALER.open(data, TOPIC)
    except CoseError:
        pass


@FAST
@given(edits)
def test_cose_mutated_message_never_opens(ed):
    bad = mutate(GOOD, ed)
    if bad == GOOD:
        return
    try:
        SEALER.open(bad, TOPIC)
    except CoseError:
        return
    raise AssertionError("a modified message was accepted")


# -- MQTT ---------------------------------------------------------------------
@FAST
@given(st.binary(max_size=300))
def test_mqtt_decode_arbitrary(data):
    try:
        codec.decode_all(data)
    except MQTTProtocolError:
        pass


packets = st.sampled_from([
    codec.encode_publish("medsentry/p/cmd", b"x" * 30, 1, False, False, 7),
    codec.encode_publish("a/b", b"", 0),
    b"\x20\x02\x01\x00", b"\x40\x02\x00\x05", b"\x90\x03\x00\x01\x01", b"\xd0\x00",
])


@FAST
@given(st.lists(packets, min_size=1, max_size=4), edits)
def test_mqtt_decode_mutated(pkts, ed):
    try:
        codec.decode_all(mutate(b"".join(pkts), ed))
    except MQTTProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(16, 64))
def test_mqtt_stream_reader_bounded(data, limit):
    """The streaming reader (preallocated buffer of `limit` bytes) ends every
    stream with a packet list and then a clean protocol or transport error."""

    async def go():
        r = asyncio.StreamReader()
        r.feed_data(data)
        r.feed_eof()
        reader = transport.PacketReader(transport.Stream(r, None), max_packet=limit)
        n = 0
        while True:
            try:
                pkt = await reader.read()
            except (MQTTProtocolError, MQTTTransportError):
                return n
            n += 1
            assert pkt[0] in (codec.CONNACK, codec.PUBLISH, codec.PUBACK, codec.SUBACK, codec.UNSUBACK, codec.PINGRESP)
            assert n <= len(data)

    asyncio.run(go())


def test_mqtt_stream_reader_discards_oversize_publish():
    async def go():
        big = codec.encode_publish("medsentry/p/cmd", b"z" * 5000, 1, False, False, 9)
        r = asyncio.StreamReader()
        r.feed_data(big + b"\xd0\x00")
        r.feed_eof()
        reader = transport.PacketReader(transport.Stream(r, None), max_packet=64)
        first = await reader.read()
        second = await reader.read()
        return first, second

    first, second = asyncio.run(go())
    assert first[:2] == (codec.PUBLISH, "medsentry/p/cmd") and first[2] is None and first[6] == 9
    assert second == (codec.PINGRESP,)
