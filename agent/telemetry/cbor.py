# Minimal CBOR (RFC 8949) encoder/decoder for the device.
#
# Common subset of MicroPython and CPython. Supports: unsigned and negative
# integers up to 64 bits, byte strings, text strings, arrays, maps, tags,
# false/true/null, floats (decodes half/single/double; encodes single when
# the value survives the round trip exactly, double otherwise).
#
# The decoder is strict and bounded, because it parses data that came over
# the network (commands) or out of flash:
#   - nesting depth <= max_depth, total data items <= max_items,
#     any single string / array / map length <= max_len;
#   - a declared length is checked against the bytes actually left BEFORE
#     anything is allocated, so a forged huge length cannot exhaust the heap;
#   - indefinite lengths, reserved additional-info values, simple values other
#     than false/true/null, duplicate map keys, unhashable map keys, invalid
#     UTF-8 and trailing bytes are all rejected;
#   - every failure is a CBORDecodeError (a ValueError); no other exception
#     escapes for any input bytes.
#
# Encoding is deterministic (RFC 8949 section 4.2.1: shortest argument, map
# keys sorted by their encoded bytes) so both runtimes produce identical bytes
# even though MicroPython dicts do not keep insertion order.
import struct

DEFAULT_MAX_DEPTH = 16
DEFAULT_MAX_ITEMS = 1024
DEFAULT_MAX_LEN = 65536

_UINT64_MAX = 0xFFFFFFFFFFFFFFFF


class CBORError(ValueError):
    pass


class CBORDecodeError(CBORError):
    pass


class CBOREncodeError(CBORError):
    pass


class Tag:
    # A CBOR tag (major type 6) wrapping one data item.
    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and other.tag == self.tag and other.value == self.value

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


# ---------------------------------------------------------------- encoding


def _head(major, n):
    # Initial byte + shortest argument for major type `major` and argument n.
    mt = major << 5
    if n < 24:
        return bytes((mt | n,))
    if n < 0x100:
        return bytes((mt | 24, n))
    if n < 0x10000:
        return bytes((mt | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((mt | 26,)) + n.to_bytes(4, "big")
    if n <= _UINT64_MAX:
        return bytes((mt | 27,)) + n.to_bytes(8, "big")
    raise CBOREncodeError("integer out of 64-bit range")


def _enc_float(x):
    # Single precision if it round-trips exactly (NaN/inf included), else double.
    try:
        s = struct.pack(">f", x)
        back = struct.unpack(">f", s)[0]
        if back == x or (x != x and back != back):
            return b"\xfa" + s
    except (OverflowError, ValueError):
        pass
    return b"\xfb" + struct.pack(">d", x)


def _encode(obj, out, depth):
    if depth > DEFAULT_MAX_DEPTH:
        raise CBOREncodeError("nesting too deep")
    # bool before int: bool is a subclass of int on CPython
    if obj is True:
        out.append(b"\xf5")
    elif obj is False:
        out.append(b"\xf4")
    elif obj is None:
        out.append(b"\xf6")
    elif isinstance(obj, int):
        if obj >= 0:
            out.append(_head(0, obj))
        else:
            out.append(_head(1, -1 - obj))
    elif isinstance(obj, float):
        out.append(_enc_float(obj))
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        out.append(_head(2, len(obj)))
        out.append(bytes(obj))
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        out.append(_head(3, len(b)))
        out.append(b)
    elif isinstance(obj, (list, tuple)):
        out.append(_head(4, len(obj)))
        for item in obj:
            _encode(item, out, depth + 1)
    elif isinstance(obj, dict):
        # Deterministic: sort by the encoded key bytes.
        pairs = []
        for k in obj:
            kb = []
            _encode(k, kb, depth + 1)
            pairs.append((b"".join(kb), k))
        pairs.sort(key=lambda p: p[0])
        out.append(_head(5, len(pairs)))
        for kb, k in pairs:
            out.append(kb)
            _encode(obj[k], out, depth + 1)
    elif isinstance(obj, Tag):
        if not isinstance(obj.tag, int) or obj.tag < 0:
            raise CBOREncodeError("bad tag number")
        out.append(_head(6, obj.tag))
        _encode(obj.value, out, depth + 1)
    else:
        raise CBOREncodeError("cannot encode type %s" % type(obj).__name__)


def dumps(obj):
    """Encode obj as deterministic CBOR bytes."""
    out = []
    _encode(obj, out, 0)
    return b"".join(out)


# ---------------------------------------------------------------- decoding


class _Decoder:
    def __init__(self, data, max_depth, max_items, max_len):
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.max_depth = max_depth
        self.items_left = max_items
        self.max_len = max_len

    def _need(self, n):
        if n > self.end - self.pos:
            raise CBORDecodeError("truncated CBOR at offset %d" % self.pos)

    def _arg(self, ai):
        # Returns the argument for additional info ai.
        if ai < 24:
            return ai
        if ai == 24:
            n = 1
        elif ai == 25:
            n = 2
        elif ai == 26:
            n = 4
        elif ai == 27:
            n = 8
        elif ai == 31:
            raise CBORDecodeError("indefinite length not supported")
        else:
            raise CBORDecodeError("reserved additional info %d" % ai)
        self._need(n)
        p = self.pos
        v = int.from_bytes(bytes(self.data[p:p + n]), "big")
        self.pos = p + n
        return v

    def _length(self, ai, min_item_size):
        n = self._arg(ai)
        if n > self.max_len:
            raise CBORDecodeError("length %d above limit %d" % (n, self.max_len))
        # Every element needs at least min_item_size bytes: refuse declared
        # lengths the remaining input cannot possibly hold (no allocation).
        if n * min_item_size > self.end - self.pos:
            raise CBORDecodeError("truncated CBOR: length %d exceeds input" % n)
        return n

    def item(self, depth):
        if depth > self.max_depth:
            raise CBORDecodeError("nesting deeper than %d" % self.max_depth)
        self.items_left -= 1
        if self.items_left < 0:
            raise CBORDecodeError("more data items than allowed")
        self._need(1)
        ib = self.data[self.pos]
        self.pos += 1
        major = ib >> 5
        ai = ib & 0x1F
        if major == 0:
            return self._arg(ai)
        if major == 1:
            return -1 - self._arg(ai)
        if major == 2:
            n = self._length(ai, 1)
            p = self.pos
            self.pos = p + n
            return bytes(self.data[p:p + n])
        if major == 3:
            n = self._length(ai, 1)
            p = self.pos
            self.pos = p + n
            try:
                return str(bytes(self.data[p:p + n]), "utf-8")
            except UnicodeError:
                raise CBORDecodeError("invalid UTF-8 in text string")
        if major == 4:
            n = self._length(ai, 1)
            out = []
            for _ in range(n):
                out.append(self.item(depth + 1))
            return out
        if major == 5:
            n = self._length(ai, 2)
            out = {}
            for _ in range(n):
                k = self.item(depth + 1)
                if not isinstance(k, (int, str, bytes)) or isinstance(k, bool):
                    raise CBORDecodeError("unsupported map key type")
                if k in out:
                    raise CBORDecodeError("duplicate map key")
                out[k] = self.item(depth + 1)
            return out
        if major == 6:
            tag = self._arg(ai)
            return Tag(tag, self.item(depth + 1))
        # major 7: simple values and floats
        if ai == 20:
            return False
        if ai == 21:
            return True
        if ai == 22:
            return None
        if ai == 25:
            self._need(2)
            p = self.pos
            self.pos = p + 2
            return struct.unpack(">e", bytes(self.data[p:p + 2]))[0]
        if ai == 26:
            self._need(4)
            p = self.pos
            self.pos = p + 4
            return struct.unpack(">f", bytes(self.data[p:p + 4]))[0]
        if ai == 27:
            self._need(8)
            p = self.pos
            self.pos = p + 8
            return struct.unpack(">d", bytes(self.data[p:p + 8]))[0]
        if ai == 31:
            raise CBORDecodeError("unexpected break")
        raise CBORDecodeError("unsupported simple value %d" % ai)


def loads(data, max_depth=DEFAULT_MAX_DEPTH, max_items=DEFAULT_MAX_ITEMS, max_len=DEFAULT_MAX_LEN):
    """Decode exactly one CBOR data item from data (bytes-like).
    Raises CBORDecodeError for anything malformed, truncated, over a limit,
    or followed by trailing bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CBORDecodeError("CBOR input must be bytes")
    d = _Decoder(data, max_depth, max_items, max_len)
    try:
        obj = d.item(0)
    except CBORDecodeError:
        raise
    except (IndexError, OverflowError, RuntimeError, TypeError, ValueError) as e:
        # Defensive: map any residual parser failure (including RecursionError,
        # a RuntimeError on both runtimes) onto the one data-error class.
        raise CBORDecodeError("malformed CBOR: %r" % (e,))
    if d.pos != d.end:
        raise CBORDecodeError("%d trailing bytes after CBOR item" % (d.end - d.pos))
    return obj
