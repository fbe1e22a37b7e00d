# Canonical JSON as TUF signs it (OLPC canonical JSON, the dialect of
# securesystemslib.formats.encode_canonical, which python-tuf uses for
# Metadata.signed_bytes):
#   - dict keys sorted by code point (UTF-8 byte order gives the same order),
#   - no whitespace at all: separators are "," and ":",
#   - in strings only backslash and double quote are escaped (every other
#     character, control characters and non-ASCII included, is written as is,
#     UTF-8 encoded),
#   - integers only (floats are rejected), true/false/null.
# The result is bytes (securesystemslib returns str; python-tuf then encodes
# it as UTF-8, which is what gets signed).
#
# Runs on MicroPython and CPython. Output is collected as a list of small
# bytes pieces and joined once, or handed piecewise to `write` so that a
# caller can hash a large document without holding the encoded form.


class CanonicalJSONError(ValueError):
    """The object cannot be encoded as canonical JSON (float, non-str key,
    unsupported type, nesting too deep, unencodable string)."""


# Bound on container nesting: TUF metadata nests about 6 levels deep; a cap
# keeps a hostile document from exhausting the (small) MicroPython C stack.
MAX_DEPTH = 32


def _utf8(s):
    # UTF-8 bytes of s with surrogate pairs combined. MicroPython's json
    # leaves an escaped pair such as "\\ud83d\\ude00" (how python-tuf's
    # json.dumps writes any non-BMP character) as two surrogate code units and
    # encodes them as 3 bytes each (CESU-8); CPython's json combines them.
    # Both must give the 4-byte UTF-8 that securesystemslib signs.
    try:
        b = s.encode("utf-8")
    except UnicodeError:
        # CPython refuses surrogates; take them through and fix below.
        b = s.encode("utf-8", "surrogatepass")
    if b"\xed" in b:
        b = _fix_surrogates(b)
    return b


def _fix_surrogates(b):
    # A surrogate encodes as ED A0..BF xx (U+D800..U+DFFF); ED 80..9F xx is
    # an ordinary character (U+D000..U+D7FF) and is left alone.
    out = None
    i = 0
    n = len(b)
    start = 0
    while True:
        i = b.find(b"\xed", i)
        if i < 0 or i + 2 >= n:
            break
        b1 = b[i + 1]
        if b1 < 0xA0:
            i += 3
            continue
        if b1 >= 0xB0 or i + 5 >= n or b[i + 3] != 0xED or not (0xB0 <= b[i + 4] <= 0xBF):
            raise CanonicalJSONError("string holds an unpaired surrogate")
        hi = 0xD000 | ((b1 & 0x3F) << 6) | (b[i + 2] & 0x3F)
        lo = 0xD000 | ((b[i + 4] & 0x3F) << 6) | (b[i + 5] & 0x3F)
        cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        if out is None:
            out = bytearray()
        out += b[start:i]
        out.append(0xF0 | (cp >> 18))
        out.append(0x80 | ((cp >> 12) & 0x3F))
        out.append(0x80 | ((cp >> 6) & 0x3F))
        out.append(0x80 | (cp & 0x3F))
        i += 6
        start = i
    if out is None:
        return b
    out += b[start:]
    return bytes(out)


def _enc_str(s):
    # Only backslash and quote are escaped, in this order (as securesystemslib).
    if "\\" in s:
        s = s.replace("\\", "\\\\")
    if '"' in s:
        s = s.replace('"', '\\"')
    return b'"' + _utf8(s) + b'"'


def _encode(obj, out, depth):
    # `out` is a callable taking bytes. Order of tests matters: bool is an int
    # subclass, so True/False are checked before int.
    if isinstance(obj, str):
        out(_enc_str(obj))
    elif obj is True:
        out(b"true")
    elif obj is False:
        out(b"false")
    elif obj is None:
        out(b"null")
    elif isinstance(obj, int):
        out(str(obj).encode())
    elif isinstance(obj, float):
        raise CanonicalJSONError("floats are not allowed in canonical JSON: %r" % (obj,))
    elif isinstance(obj, (list, tuple)):
        if depth >= MAX_DEPTH:
            raise CanonicalJSONError("nesting deeper than %d" % MAX_DEPTH)
        out(b"[")
        first = True
        for item in obj:
            if not first:
                out(b",")
            first = False
            _encode(item, out, depth + 1)
        out(b"]")
    elif isinstance(obj, dict):
        if depth >= MAX_DEPTH:
            raise CanonicalJSONError("nesting deeper than %d" % MAX_DEPTH)
        # Sort by the UTF-8 bytes of the key: byte order of UTF-8 is code
        # point order (what CPython's sorted() uses), also when MicroPython
        # holds a non-BMP character as a surrogate pair.
        items = []
        for k in obj:
            if not isinstance(k, str):
                raise CanonicalJSONError("dict keys must be str, got %s" % type(k).__name__)
            items.append((_utf8(k), k))
        items.sort()
        out(b"{")
        first = True
        for kb, k in items:
            if not first:
                out(b",")
            first = False
            out(_enc_str(k))
            out(b":")
            _encode(obj[k], out, depth + 1)
        out(b"}")
    else:
        raise CanonicalJSONError("cannot encode %s in canonical JSON" % type(obj).__name__)


def encode_canonical(obj, write=None):
    """Canonical JSON bytes of `obj` (dict/list/tuple/str/int/bool/None).

    With `write` (a callable taking bytes), the encoding is streamed to it in
    pieces and None is returned. Raises CanonicalJSONError for anything that
    has no canonical form."""
    if write is not None:
        _encode(obj, write, 0)
        return None
    parts = []
    _encode(obj, parts.append, 0)
    return b"".join(parts)
