# MQTT 3.1.1 packet codec: pure functions, bytes in / bytes out. Every
# malformed input raises MQTTProtocolError (bad data); nothing here touches
# the network. The client (client.py) sends what encode_* builds and hands
# what transport.PacketReader reads to decode_packet.
from board.compat import const

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
    if not 1 <= pid <= 65535:
        raise MQTTProtocolError("packet id must be 1..65535")
    body = pid.to_bytes(2, "big")
    for t, q in topics:
        if q not in (0, 1):
            raise MQTTProtocolError("subscription QoS must be 0 or 1")
        if not isinstance(t, str) or not t or len(t) > MAX_TOPIC or "\x00" in t:
            raise MQTTProtocolError("topic filter must be 1..%d characters, no NUL" % MAX_TOPIC)
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
