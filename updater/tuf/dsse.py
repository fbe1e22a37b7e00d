# DSSE envelopes of TUF metadata (python-tuf's tuf.api.dsse SimpleEnvelope):
#   {"payload": base64(JSON of signed), "payloadType":
#    "application/vnd.tuf+json", "signatures": [{"keyid", "sig" (base64)}]};
# signatures are over the DSSE pre-authentication encoding
#   PAE = b"DSSEv1 %d %s %d %s" % (len(type), type, len(payload), payload).
# The decoded payload then goes through the same checks as the traditional
# envelope's signed part (envelope.py).
import binascii
import gc
import json

from updater.tuf.errors import FormatError
from updater.tuf.hashes import is_stream as _is_stream
from updater.tuf.metadata import fail as _fail, parse_json as _parse_json

# The only DSSE payload type a TUF client accepts (python-tuf's
# SimpleEnvelope.DEFAULT_PAYLOAD_TYPE).
DSSE_PAYLOAD_TYPE = "application/vnd.tuf+json"


def b64decode_strict(s, where):
    """Base64 text -> bytes, exactly as strictly as securesystemslib's b64dec
    (what python-tuf decodes DSSE with: base64.b64decode(validate=True),
    retried with the URL-safe alphabet). See _b64_in_place."""
    if not isinstance(s, str):
        _fail("%s must be a base64 string" % where)
    buf = bytearray(s.encode())
    n = _b64_in_place(buf, 0, len(buf), where)
    return bytes(buf[:n])


class DssePayload:
    """What a DSSE signature covers: PAE(payloadType, payload). Streamed
    into the verifiers by check_signatures() (header, then the payload
    bytes), never concatenated."""

    def __init__(self, payload_type, payload):
        self.payload_type = payload_type.encode()
        self.payload = payload

    def header(self):
        return b"DSSEv1 %d " % len(self.payload_type) + self.payload_type + b" %d " % len(self.payload)

    def write_to(self, write):
        write(self.header())
        write(self.payload)

    def pae(self):
        # The whole PAE (tests; the client streams it instead)
        return self.header() + bytes(self.payload)


def pae(payload_type, payload):
    """DSSE pre-authentication encoding (bytes); payload_type is a str."""
    return DssePayload(payload_type, payload).pae()


def open_envelope(data):
    # DSSE SimpleEnvelope -> (signed dict, DssePayload, [signature dicts]).
    # The payload type is checked before any decoding (python-tuf does the
    # same); every signature must be valid base64 (python-tuf refuses the
    # whole envelope otherwise) and is converted to hex like the
    # traditional envelope's.
    doc, out, payload = _load_dsse_in_place(data)
    data = None
    if payload is None:
        # rare shapes (no plain "payload" string): the general JSON path
        buf = doc
        doc = _parse_json(buf)
        buf = None
        if not isinstance(doc, dict):
            _fail("metadata must be a JSON object")
        out = _envelope_header(doc)
        payload = b64decode_strict(doc.get("payload"), "DSSE payload")
    doc = None
    gc.collect()
    signed = _parse_json(payload if _JSON_TAKES_MEMORYVIEW else bytes(payload))
    return signed, DssePayload(DSSE_PAYLOAD_TYPE, payload), out


def _json_takes_memoryview():
    # MicroPython's json.loads parses a memoryview in place; CPython's
    # wants bytes (it then gets a copy: CPython is the test runtime).
    try:
        json.loads(memoryview(b"0"))
        return True
    except TypeError:
        return False


_JSON_TAKES_MEMORYVIEW = _json_takes_memoryview()


# ---------------------------------------------------------------- DSSE in place
#
# json.load would build the payload (a base64 string of almost the whole
# file) by growing one buffer step by step; on a 256 KiB MicroPython heap
# that fragments the heap and fails for files of ~26 KB. Instead the file is
# read once into one buffer of its exact size, the top-level "payload" string
# is located by a small JSON scanner, decoded from base64 in place (the
# output is shorter than the input), and only the rest of the envelope (keys,
# payload type, signatures: a few hundred bytes) goes through json.loads.
# Peak: the file + the parsed payload. A payload string holding JSON escapes
# (no producer writes them; base64 never needs them) takes the json.loads
# path, so the result is always what a JSON parser would give.

_WS = b" \t\r\n"
_B64_CHUNK = 1024  # base64 characters decoded per step (multiple of 4)


def _read_all(data):
    # bytes or a binary file -> bytearray of exactly its size (one allocation)
    if not _is_stream(data):
        return bytearray(data)
    n = data.seek(0, 2)
    data.seek(0)
    buf = bytearray(n)
    mv = memoryview(buf)
    got = 0
    while got < n:
        k = data.readinto(mv[got:])
        if not k:
            break
        got += k
    data.seek(0)
    if got != n:
        _fail("metadata file changed while reading")
    return buf


def _string_end(buf, i, n):
    # buf[i] is an opening quote: index of the closing quote
    j = i + 1
    while True:
        k = buf.find(b'"', j)
        if k < 0 or k >= n:
            _fail("not JSON: unterminated string")
        bs = 0
        while buf[k - 1 - bs] == 92:  # backslashes right before the quote
            bs += 1
        if bs % 2 == 0:
            return k
        j = k + 1


def _skip_ws(buf, i, n):
    while i < n and buf[i] in _WS:
        i += 1
    return i


def _find_payload(buf):
    """(start, end) of the characters of the last top-level "payload"
    string value, or None (no such key, or its value is not a string: the
    json.loads path then reports the error)."""
    n = len(buf)
    depth = 0
    found = None
    i = 0
    while i < n:
        c = buf[i]
        if c == 34:  # '"'
            k = _string_end(buf, i, n)
            if depth == 1:
                j = _skip_ws(buf, k + 1, n)
                if j < n and buf[j] == 58:  # ':' -> this string is a key
                    key = buf[i:k + 1]
                    if b"\\" in key:
                        try:
                            key = json.loads(key).encode()
                        except (ValueError, TypeError):
                            _fail("not JSON: bad key")
                    else:
                        key = key[1:-1]
                    if key == b"payload":
                        v = _skip_ws(buf, j + 1, n)
                        if v < n and buf[v] == 34:
                            found = (v + 1, _string_end(buf, v, n))
                        else:
                            found = None
                    i = j + 1
                    continue
            i = k + 1
            continue
        if c == 123 or c == 91:  # { [
            depth += 1
        elif c == 125 or c == 93:  # } ]
            depth -= 1
        i += 1
    return found


def _b64_in_place(buf, a, b, where="DSSE payload"):
    """Strictly decode base64 buf[a:b] into buf[a:...]; returns the decoded
    length. Accepts what CPython's base64.b64decode(validate=True) accepts
    after the URL-safe characters are mapped ('-' to '+', '_' to '/'; that
    is securesystemslib's b64dec): only the alphabet, then at most two '=';
    with d data characters, d % 4 == 0 (any such padding, ignored),
    d % 4 == 2 with "==", or d % 4 == 3 with "="; nothing else (no
    whitespace). binascii.a2b_base64 itself skips characters outside the
    alphabet, so every chunk must decode to exactly the length its
    characters give; any skipped character makes it shorter."""
    if buf.find(b"-", a, b) >= 0 or buf.find(b"_", a, b) >= 0:
        for i in range(a, b):
            if buf[i] == 45:
                buf[i] = 43
            elif buf[i] == 95:
                buf[i] = 47
    body = b
    while body > a and buf[body - 1] == 61 and b - body < 2:
        body -= 1
    if buf.find(b"=", a, body) >= 0:
        _fail("%s: not base64 (misplaced '=')" % where)
    d = body - a
    p = b - body
    if d % 4 == 0:
        if d == 0 and p:
            _fail("%s: not base64 (padding only)" % where)
        end = body  # complete quads: extra padding is ignored
    elif (d % 4 == 2 and p == 2) or (d % 4 == 3 and p == 1):
        end = b
    else:
        _fail("%s: not base64 (bad length or padding)" % where)
    mv = memoryview(buf)
    r = a
    w = a
    while r < end:
        e = min(r + _B64_CHUNK, end)
        try:
            out = binascii.a2b_base64(mv[r:e])
        except ValueError as ex:
            _fail("%s: not base64: %s" % (where, ex))
        pad = (e - body) if e > body else 0
        if len(out) != (e - r) // 4 * 3 - pad:
            _fail("%s: not base64" % where)
        buf[w:w + len(out)] = out
        w += len(out)
        r = e
        out = None
    return w - a


def _load_dsse_in_place(data):
    # -> (envelope dict without payload, payload memoryview) or None when
    # the payload cannot be located as a plain string (json.loads path).
    buf = _read_all(data)
    data = None
    loc = _find_payload(buf)
    if loc is None or buf.find(b"\\", loc[0], loc[1]) >= 0:
        return buf, None, None
    a, b = loc
    rest = buf[:a] + buf[b:]  # the envelope with "payload": ""
    try:
        doc = json.loads(rest)
    except (ValueError, RuntimeError, TypeError) as e:
        raise FormatError("not JSON: %s" % e)
    rest = None
    if not isinstance(doc, dict):
        _fail("metadata must be a JSON object")
    # the type and signatures are checked before the payload is decoded
    sigs = _envelope_header(doc)
    n = _b64_in_place(buf, a, b)
    return doc, sigs, memoryview(buf)[a:a + n]


def _envelope_header(doc):
    # payloadType and signatures of a DSSE envelope -> [signature dicts]
    if "signed" in doc and "payload" not in doc:
        _fail("expected a DSSE envelope, got traditional TUF metadata")
    ptype = doc.get("payloadType")
    sigs = doc.get("signatures")
    if not isinstance(ptype, str):
        _fail("DSSE envelope lacks a 'payloadType' string")
    if ptype != DSSE_PAYLOAD_TYPE:
        _fail("DSSE payloadType must be '%s', got '%s'" % (DSSE_PAYLOAD_TYPE, ptype))
    if not isinstance(sigs, list):
        _fail("DSSE envelope lacks a 'signatures' list")
    out = []
    for s in sigs:
        if not isinstance(s, dict):
            _fail("signature must be an object")
        raw = b64decode_strict(s.get("sig"), "DSSE signature")
        out.append({"keyid": s.get("keyid"), "sig": binascii.hexlify(raw).decode()})
    return out
