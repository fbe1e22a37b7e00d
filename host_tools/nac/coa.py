"""Tell a switch at once that a device's admission changed: RADIUS Disconnect-Request
(RFC 5176) to the NAS's dynamic-authorization port (3799 by default).

The switch drops the device's session; the device re-authenticates at once (802.1X)
and gets the new decision. A Disconnect-Request carries User-Name (the device id,
which EAP-TLS put in the session), Event-Timestamp against replays, and a
Message-Authenticator (HMAC-MD5 over the packet with a zero authenticator, RFC 5176
section 3.1) before the Request Authenticator MD5 (RFC 5176 section 2.3).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct
import time

DISCONNECT_REQUEST, DISCONNECT_ACK, DISCONNECT_NAK = 40, 41, 42
USER_NAME, EVENT_TIMESTAMP, MESSAGE_AUTHENTICATOR = 1, 55, 80


class CoaError(RuntimeError):
    """No (authentic) answer from the NAS."""


def _attr(kind: int, value: bytes) -> bytes:
    if len(value) > 253:
        raise ValueError("RADIUS attribute too long")
    return bytes([kind, len(value) + 2]) + value


def disconnect_request(secret: bytes, ident: int, user_name: str) -> bytes:
    """The encoded Disconnect-Request packet."""
    attrs = (_attr(USER_NAME, user_name.encode()) + _attr(EVENT_TIMESTAMP, struct.pack("!I", int(time.time())))
             + _attr(MESSAGE_AUTHENTICATOR, bytes(16)))
    length = 20 + len(attrs)
    head = struct.pack("!BBH", DISCONNECT_REQUEST, ident, length)
    mac = hmac.new(secret, head + bytes(16) + attrs, hashlib.md5).digest()
    attrs = attrs[:-16] + mac
    auth = hashlib.md5(head + bytes(16) + attrs + secret).digest()
    return head + auth + attrs


def _check_reply(data: bytes, request: bytes, secret: bytes) -> int:
    if len(data) < 20:
        raise CoaError("short reply")
    code, ident, length = struct.unpack("!BBH", data[:4])
    if ident != request[1] or length != len(data) or code not in (DISCONNECT_ACK, DISCONNECT_NAK):
        raise CoaError("reply does not match the request")
    want = hashlib.md5(data[:4] + request[4:20] + data[20:] + secret).digest()
    if not hmac.compare_digest(want, data[4:20]):
        raise CoaError("reply authenticator is wrong (shared secret mismatch?)")
    return code


def disconnect(host: str, port: int, secret: str, user_name: str, timeout: float = 2.0,
               tries: int = 2) -> bool:
    """Send a Disconnect-Request; True on Disconnect-ACK, False on NAK, CoaError on silence."""
    key = secret.encode()
    packet = disconnect_request(key, os.urandom(1)[0], user_name)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        for _ in range(tries):
            sock.send(packet)
            try:
                return _check_reply(sock.recv(4096), packet, key) == DISCONNECT_ACK
            except TimeoutError:
                continue
            except ConnectionRefusedError:
                raise CoaError(f"nothing listens on {host}:{port}/udp") from None
    raise CoaError(f"no answer from {host}:{port} (wrong secret, or not a CoA listener)")
