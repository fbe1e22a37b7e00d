# Strict checks of the JSON fields of TUF metadata, shared by the metadata
# model and the envelopes: every malformed input raises FormatError (a
# RepositoryError), nothing else escapes (see tests/host/test_tuf_fuzz.py).
import json

from updater.tuf.errors import FormatError


def fail(msg):
    raise FormatError(msg)


def is_int(v):
    # bool is an int subclass: refuse it where a number is required.
    return isinstance(v, int) and not isinstance(v, bool)


def get(d, key, kind, where):
    # Required field of a given kind; `kind` is a type or "int".
    if key not in d:
        fail("%s: missing '%s'" % (where, key))
    v = d[key]
    if kind == "int":
        if not is_int(v):
            fail("%s: '%s' must be an integer" % (where, key))
    elif not isinstance(v, kind):
        fail("%s: '%s' has the wrong type" % (where, key))
    return v


def check_dict(v, where):
    if not isinstance(v, dict):
        fail("%s must be an object" % where)
    return v


def str_list(v, where, unique):
    if not isinstance(v, list):
        fail("%s must be a list" % where)
    for x in v:
        if not isinstance(x, str):
            fail("%s must hold strings" % where)
    if unique and len(set(v)) != len(v):
        fail("%s has duplicates" % where)
    return v


def is_stream(data):
    return hasattr(data, "readinto")


def parse_json(data):
    try:
        if is_stream(data):
            return json.load(data)
        if isinstance(data, (bytes, bytearray, memoryview)):
            return json.loads(data)
        raise TypeError("metadata must be bytes or a binary file")
    except (ValueError, RuntimeError, TypeError) as e:
        # ValueError: bad JSON (or bad UTF-8); RuntimeError: recursion depth
        # on CPython's parser; TypeError: MicroPython on odd input.
        raise FormatError("not JSON: %s" % e)


# ---------------------------------------------------------------- time


def _days_from_civil(y, m, d):
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


_MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def parse_expires(s):
    """'YYYY-MM-DDTHH:MM:SSZ' -> seconds since 1970 (UTC). Strict format;
    seconds 00..59 as python-tuf's datetime.strptime (no leap second)."""
    if not isinstance(s, str) or len(s) != 20:
        fail("expires must be a 'YYYY-MM-DDTHH:MM:SSZ' string")
    if s[4] != "-" or s[7] != "-" or s[10] != "T" or s[13] != ":" or s[16] != ":" or s[19] != "Z":
        fail("expires %r is not 'YYYY-MM-DDTHH:MM:SSZ'" % s)
    parts = (s[0:4], s[5:7], s[8:10], s[11:13], s[14:16], s[17:19])
    for p in parts:
        for c in p:
            if c < "0" or c > "9":
                fail("expires %r has a non-digit" % s)
    y, mo, d, h, mi, se = [int(p) for p in parts]
    if y < 1 or not 1 <= mo <= 12 or h > 23 or mi > 59 or se > 59:
        fail("expires %r is out of range" % s)
    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
    mdays = 29 if (mo == 2 and leap) else _MDAYS[mo - 1]
    if not 1 <= d <= mdays:
        fail("expires %r has an invalid day" % s)
    return _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se
