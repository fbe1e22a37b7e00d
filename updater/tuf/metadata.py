# Strict parsing and validation of TUF metadata (spec v1.0.x), plus the
# signature threshold check and the length/hash checks. Two envelopes, as
# python-tuf's ngclient (UpdaterConfig.envelope_type):
# - ENVELOPE_METADATA (default): the JSON "traditional" envelope
#   {"signed": {...}, "signatures": [{"keyid", "sig" (hex)}]}; signatures
#   are over the canonical JSON of "signed".
# - ENVELOPE_SIMPLE: a DSSE envelope (python-tuf's tuf.api.dsse
#   SimpleEnvelope) {"payload": base64(JSON of signed), "payloadType":
#   "application/vnd.tuf+json", "signatures": [{"keyid", "sig" (base64)}]};
#   signatures are over the DSSE pre-authentication encoding
#   PAE = b"DSSEv1 %d %s %d %s" % (len(type), type, len(payload), payload).
#   The decoded payload then goes through exactly the same checks.
#
# Design notes for the device:
# - `load(data, expected_type)` takes one metadata file (bytes, or an open
#   binary file parsed straight from the stream so that the raw bytes never
#   sit in RAM), and validates the structure of the signed part as strictly
#   as python-tuf's Metadata API does.
# - `check_signatures()` streams the canonical JSON of the signed part (what
#   was signed) once into every verifier it needs (updater.crypto streaming
#   verifiers), so the canonical bytes are never held whole either.
# - Objects keep only what the client needs. The target list of a Targets
#   role is kept as the parsed dict (every entry validated on load); a
#   TargetFile object is made only for the target looked up.
# - Every malformed input raises FormatError (a RepositoryError); nothing else
#   escapes: see tests/host/test_tuf_fuzz.py.
import binascii
import gc
import hashlib
import json

from updater.tuf.errors import (
    FormatError,
    LengthOrHashMismatchError,
    RepositoryError,
    UnsignedMetadataError,
)
from updater.crypto import canonjson
from updater.crypto import verify as _verify

try:
    from updater.crypto.sha512 import new_sha512 as _sha512
except ImportError:  # older crypto module: pure class only
    from updater.crypto.sha512 import sha512 as _sha512

ROOT = "root"
TIMESTAMP = "timestamp"
SNAPSHOT = "snapshot"
TARGETS = "targets"
TOP_LEVEL_ROLES = (ROOT, TIMESTAMP, SNAPSHOT, TARGETS)

# The major version of the TUF specification we implement (python-tuf
# accepts any "1.x" or "1.x.y").
SPEC_MAJOR = "1"

# Envelope types (the values of UpdaterConfig.envelope_type and of the CLI's
# --envelope-type option).
ENVELOPE_METADATA = "metadata"
ENVELOPE_SIMPLE = "simple"
ENVELOPE_TYPES = (ENVELOPE_METADATA, ENVELOPE_SIMPLE)

# The only DSSE payload type a TUF client accepts (python-tuf's
# SimpleEnvelope.DEFAULT_PAYLOAD_TYPE).
DSSE_PAYLOAD_TYPE = "application/vnd.tuf+json"

# Hash algorithms this client can compute. Others listed in metadata are
# ignored, but at least one of these must be present and all of these that
# are present must match (see _hashers()).
SUPPORTED_HASHES = ("sha256", "sha512")


def _fail(msg):
    raise FormatError(msg)


def _is_int(v):
    # bool is an int subclass: refuse it where a number is required.
    return isinstance(v, int) and not isinstance(v, bool)


def _get(d, key, kind, where):
    # Required field of a given kind; `kind` is a type or "int".
    if key not in d:
        _fail("%s: missing '%s'" % (where, key))
    v = d[key]
    if kind == "int":
        if not _is_int(v):
            _fail("%s: '%s' must be an integer" % (where, key))
    elif not isinstance(v, kind):
        _fail("%s: '%s' has the wrong type" % (where, key))
    return v


def _check_dict(v, where):
    if not isinstance(v, dict):
        _fail("%s must be an object" % where)
    return v


def _str_list(v, where, unique):
    if not isinstance(v, list):
        _fail("%s must be a list" % where)
    for x in v:
        if not isinstance(x, str):
            _fail("%s must hold strings" % where)
    if unique and len(set(v)) != len(v):
        _fail("%s has duplicates" % where)
    return v


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
        _fail("expires must be a 'YYYY-MM-DDTHH:MM:SSZ' string")
    if s[4] != "-" or s[7] != "-" or s[10] != "T" or s[13] != ":" or s[16] != ":" or s[19] != "Z":
        _fail("expires %r is not 'YYYY-MM-DDTHH:MM:SSZ'" % s)
    parts = (s[0:4], s[5:7], s[8:10], s[11:13], s[14:16], s[17:19])
    for p in parts:
        for c in p:
            if c < "0" or c > "9":
                _fail("expires %r has a non-digit" % s)
    y, mo, d, h, mi, se = [int(p) for p in parts]
    if y < 1 or not 1 <= mo <= 12 or h > 23 or mi > 59 or se > 59:
        _fail("expires %r is out of range" % s)
    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
    mdays = 29 if (mo == 2 and leap) else _MDAYS[mo - 1]
    if not 1 <= d <= mdays:
        _fail("expires %r has an invalid day" % s)
    return _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se


# ---------------------------------------------------------------- hashes


def _hex(b):
    return binascii.hexlify(b).decode()


def new_hasher(algo):
    """A hashlib-like object for a supported algorithm, else None."""
    if algo == "sha256":
        return hashlib.sha256()
    if algo == "sha512":
        return _sha512()
    return None


class HashCheck:
    """Streaming length + hash check against the values metadata lists.

    `update(chunk)` as data arrives, then `finish()` raises
    LengthOrHashMismatchError on any difference. `length` None means the
    metadata lists no length; `hashes` None/{} means it lists no hashes
    (allowed for MetaFile only, see require_hash)."""

    def __init__(self, length, hashes, require_hash):
        self.length = length
        self.count = 0
        self.hashers = []
        if hashes:
            for algo in hashes:
                h = new_hasher(algo)
                if h is not None:
                    self.hashers.append((algo, h, hashes[algo]))
            if not self.hashers:
                raise LengthOrHashMismatchError(
                    "no supported hash algorithm among %s" % ",".join(sorted(hashes))
                )
        elif require_hash:
            raise LengthOrHashMismatchError("no hashes listed")

    def update(self, chunk):
        self.count += len(chunk)
        if self.length is not None and self.count > self.length:
            raise LengthOrHashMismatchError(
                "more than the expected %d bytes" % self.length
            )
        for _a, h, _e in self.hashers:
            h.update(chunk)

    def finish(self):
        if self.length is not None and self.count != self.length:
            raise LengthOrHashMismatchError(
                "length %d, expected %d" % (self.count, self.length)
            )
        for algo, h, expected in self.hashers:
            got = _hex(h.digest())
            if got != expected:
                raise LengthOrHashMismatchError(
                    "%s mismatch: got %s, expected %s" % (algo, got, expected)
                )


def _check_hashes_field(v, where):
    if not isinstance(v, dict) or not v:
        _fail("%s: hashes must be a non-empty object" % where)
    for k in v:
        if not isinstance(k, str) or not isinstance(v[k], str):
            _fail("%s: hashes must map strings to strings" % where)
    return v


def _check_length_field(v, where):
    if not _is_int(v) or v < 0:
        _fail("%s: length must be an integer >= 0" % where)
    return v


class MetaFile:
    """Entry of timestamp/snapshot 'meta': version, optional length/hashes."""

    def __init__(self, d, where):
        _check_dict(d, where)
        self.version = _get(d, "version", "int", where)
        if self.version <= 0:
            _fail("%s: version must be > 0" % where)
        self.length = None
        self.hashes = None
        if "length" in d:
            self.length = _check_length_field(d["length"], where)
        if "hashes" in d:
            self.hashes = _check_hashes_field(d["hashes"], where)

    def verify_length_and_hashes(self, data):
        # data: bytes or a binary file object (read through, then rewound)
        hc = HashCheck(self.length, self.hashes, False)
        feed(data, hc)
        hc.finish()


class TargetFile:
    """One target: path, length, hashes and the optional 'custom' object
    (model/version fields of a firmware package live there)."""

    def __init__(self, path, d):
        where = "target '%s'" % path
        _check_dict(d, where)
        self.path = path
        self.length = _check_length_field(_get(d, "length", "int", where), where)
        self.hashes = _check_hashes_field(_get(d, "hashes", dict, where), where)
        self.custom = d.get("custom")

    def hash_check(self):
        return HashCheck(self.length, self.hashes, True)

    def first_hash(self):
        # Consistent snapshots: target file names are prefixed with a hash
        # digest. python-tuf takes the first hash of the entry as written;
        # python-tuf writes JSON with sorted keys, so that is the
        # alphabetically first algorithm (and JSON objects have no order
        # once parsed on MicroPython).
        return self.hashes[sorted(self.hashes)[0]]

    def __repr__(self):
        return "TargetFile(%r, %d)" % (self.path, self.length)


# ---------------------------------------------------------------- keys/roles


def _check_keys(keys, where):
    _check_dict(keys, where)
    for keyid in keys:
        k = keys[keyid]
        w = "%s[%s]" % (where, keyid)
        _check_dict(k, w)
        _get(k, "keytype", str, w)
        _get(k, "scheme", str, w)
        kv = _get(k, "keyval", dict, w)
        _get(kv, "public", str, w)
    return keys


class Role:
    """keyids + threshold (a top-level role in root, or the common part of a
    delegated role)."""

    def __init__(self, d, where):
        _check_dict(d, where)
        self.keyids = _str_list(_get(d, "keyids", list, where), where + ".keyids", True)
        self.threshold = _get(d, "threshold", "int", where)
        if self.threshold < 1:
            _fail("%s: threshold must be >= 1" % where)

    def same_as(self, other):
        return (
            other is not None
            and self.threshold == other.threshold
            and sorted(self.keyids) == sorted(other.keyids)
        )


def _split_range(s):
    # Bracket expression body (after '!') -> list of (lo, hi) char ranges.
    # "a-c" is a range, a '-' first or last is literal. lo > hi matches
    # nothing (python's fnmatch drops such ranges too).
    items = []
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if i + 2 < n and s[i + 1] == "-":
            items.append((c, s[i + 2]))
            i += 3
        else:
            items.append((c, c))
            i += 1
    return items


def _compile_glob(pat):
    # Shell-style pattern -> tokens: "*" (any run), "?" (one char), a str of
    # length 1 (that char), or (negate, ranges) for [...] / [!...].
    # Same rules as CPython's fnmatch.translate for '*', '?', '[...]',
    # '[!...]', ']' first in a set, unclosed '[' taken literally.
    toks = []
    i = 0
    n = len(pat)
    while i < n:
        c = pat[i]
        i += 1
        if c == "*":
            if not toks or toks[-1] != "*":
                toks.append("*")
        elif c == "?":
            toks.append("?")
        elif c == "[":
            j = i
            if j < n and pat[j] == "!":
                j += 1
            if j < n and pat[j] == "]":
                j += 1
            while j < n and pat[j] != "]":
                j += 1
            if j >= n:
                toks.append("[")
            else:
                body = pat[i:j]
                i = j + 1
                neg = body.startswith("!")
                if neg:
                    body = body[1:]
                toks.append((neg, _split_range(body)))
        else:
            toks.append(c)
    return toks


def _tok_match(tok, ch):
    if tok == "?":
        return True
    if isinstance(tok, str):
        return tok == ch
    neg, ranges = tok
    hit = False
    for lo, hi in ranges:
        if lo <= ch <= hi:
            hit = True
            break
    return hit != neg


def fnmatchcase(name, pat):
    """fnmatch.fnmatchcase for the TUF 'paths' patterns: '*' matches any run
    (including '/', but callers match segment by segment), '?' one char,
    [seq] / [!seq] a set. Iterative, O(len(name)*len(pat)) worst case."""
    toks = _compile_glob(pat)
    nt = len(toks)
    ns = len(name)
    ti = si = 0
    star_t = -1
    star_s = 0
    while si < ns:
        if ti < nt and toks[ti] == "*":
            star_t = ti
            star_s = si
            ti += 1
        elif ti < nt and _tok_match(toks[ti], name[si]):
            ti += 1
            si += 1
        elif star_t >= 0:
            ti = star_t + 1
            star_s += 1
            si = star_s
        else:
            return False
    while ti < nt and toks[ti] == "*":
        ti += 1
    return ti == nt


def path_matches(target_path, pattern):
    """TUF 'paths' matching as python-tuf does it: same number of '/'
    segments, each segment matched with fnmatch semantics."""
    tp = target_path.split("/")
    pp = pattern.split("/")
    if len(tp) != len(pp):
        return False
    for i in range(len(tp)):
        if not fnmatchcase(tp[i], pp[i]):
            return False
    return True


def _path_hash(target_path):
    return _hex(hashlib.sha256(target_path.encode()).digest())


class DelegatedRole(Role):
    def __init__(self, d, where):
        Role.__init__(self, d, where)
        self.name = _get(d, "name", str, where)
        if not self.name or self.name in TOP_LEVEL_ROLES:
            _fail("%s: delegated role name %r not allowed" % (where, self.name))
        self.terminating = _get(d, "terminating", bool, where)
        self.paths = None
        self.path_hash_prefixes = None
        if "paths" in d:
            self.paths = _str_list(d["paths"], where + ".paths", False)
        if "path_hash_prefixes" in d:
            self.path_hash_prefixes = _str_list(
                d["path_hash_prefixes"], where + ".path_hash_prefixes", False
            )
        if (self.paths is None) == (self.path_hash_prefixes is None):
            _fail("%s: exactly one of paths, path_hash_prefixes must be set" % where)

    def is_delegated_path(self, target_path):
        if self.path_hash_prefixes is not None:
            h = _path_hash(target_path)
            for p in self.path_hash_prefixes:
                if h.startswith(p):
                    return True
            return False
        for p in self.paths:
            if path_matches(target_path, p):
                return True
        return False


class SuccinctRoles(Role):
    """TAP 15 succinct hash-bin delegation: 2**bit_length terminating bins
    named '<prefix>-<hex index>' sharing keyids/threshold."""

    def __init__(self, d, where):
        Role.__init__(self, d, where)
        self.bit_length = _get(d, "bit_length", "int", where)
        if not 1 <= self.bit_length <= 32:
            _fail("%s: bit_length must be 1..32" % where)
        self.name_prefix = _get(d, "name_prefix", str, where)
        self.suffix_len = len("%x" % ((1 << self.bit_length) - 1))

    def role_for_target(self, target_path):
        h = hashlib.sha256(target_path.encode()).digest()
        n = ((h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3]) >> (32 - self.bit_length)
        s = "%x" % n
        return "%s-%s" % (self.name_prefix, "0" * (self.suffix_len - len(s)) + s)

    def is_role(self, name):
        pre = self.name_prefix + "-"
        if not name.startswith(pre):
            return False
        suf = name[len(pre):]
        if len(suf) != self.suffix_len:
            return False
        for c in suf:
            if c not in "0123456789abcdef":
                return False
        return int(suf, 16) < (1 << self.bit_length)


class Delegations:
    def __init__(self, d, where):
        _check_dict(d, where)
        self.keys = _check_keys(_get(d, "keys", dict, where), where + ".keys")
        self.roles = None  # list of DelegatedRole, in metadata order
        self.succinct = None
        has_roles = "roles" in d
        has_succ = "succinct_roles" in d
        if has_roles == has_succ:
            _fail("%s: exactly one of roles, succinct_roles must be set" % where)
        if has_roles:
            lst = d["roles"]
            if not isinstance(lst, list):
                _fail("%s.roles must be a list" % where)
            self.roles = []
            seen = set()
            for i in range(len(lst)):
                r = DelegatedRole(lst[i], "%s.roles[%d]" % (where, i))
                if r.name in seen:
                    _fail("%s: duplicate role %r" % (where, r.name))
                seen.add(r.name)
                self.roles.append(r)
        else:
            self.succinct = SuccinctRoles(d["succinct_roles"], where + ".succinct_roles")

    def get_role(self, name):
        """Role (keyids/threshold) for a delegated role name, or None."""
        if self.roles is not None:
            for r in self.roles:
                if r.name == name:
                    return r
            return None
        if self.succinct.is_role(name):
            return self.succinct
        return None

    def roles_for_target(self, target_path):
        """[(role name, terminating)] responsible for target_path, in order."""
        out = []
        if self.roles is not None:
            for r in self.roles:
                if r.is_delegated_path(target_path):
                    out.append((r.name, r.terminating))
        else:
            out.append((self.succinct.role_for_target(target_path), True))
        return out


# ---------------------------------------------------------------- signed


class Signed:
    type = None

    def _common(self, d):
        where = self.type
        _check_dict(d, where)
        t = _get(d, "_type", str, where)
        if t != self.type:
            _fail("expected _type '%s', got '%s'" % (self.type, t))
        self.version = _get(d, "version", "int", where)
        if self.version <= 0:
            _fail("%s: version must be > 0" % where)
        spec = _get(d, "spec_version", str, where)
        parts = spec.split(".")
        if len(parts) not in (2, 3):
            _fail("%s: bad spec_version %r" % (where, spec))
        for p in parts:
            if not p or not p.isdigit():
                _fail("%s: bad spec_version %r" % (where, spec))
        if parts[0] != SPEC_MAJOR:
            _fail("%s: unsupported spec_version %r" % (where, spec))
        self.spec_version = spec
        self.expires_str = _get(d, "expires", str, where)
        self.expires = parse_expires(self.expires_str)

    def is_expired(self, now):
        return now >= self.expires


class Root(Signed):
    type = ROOT

    def __init__(self, d):
        self._common(d)
        self.keys = _check_keys(_get(d, "keys", dict, "root"), "root.keys")
        roles = _get(d, "roles", dict, "root")
        if sorted(roles) != sorted(TOP_LEVEL_ROLES):
            _fail("root.roles must be exactly root, timestamp, snapshot, targets")
        self.roles = {}
        for name in TOP_LEVEL_ROLES:
            self.roles[name] = Role(roles[name], "root.roles." + name)
        cs = d.get("consistent_snapshot", False)
        if not isinstance(cs, bool):
            _fail("root.consistent_snapshot must be a boolean")
        self.consistent_snapshot = cs

    def get_role(self, name):
        return self.roles.get(name)


class Timestamp(Signed):
    type = TIMESTAMP

    def __init__(self, d):
        self._common(d)
        meta = _get(d, "meta", dict, "timestamp")
        if "snapshot.json" not in meta:
            _fail("timestamp.meta lacks snapshot.json")
        self.snapshot_meta = MetaFile(meta["snapshot.json"], "timestamp.meta[snapshot.json]")


class Snapshot(Signed):
    type = SNAPSHOT

    def __init__(self, d):
        self._common(d)
        meta = _get(d, "meta", dict, "snapshot")
        for name in meta:
            if not isinstance(name, str):
                _fail("snapshot.meta keys must be strings")
            MetaFile(meta[name], "snapshot.meta[%s]" % name)  # validate
        # Kept as the parsed dict (a snapshot may list hundreds of roles):
        # MetaFile objects are made on lookup.
        self.meta = meta

    def get_meta(self, name):
        """MetaFile for e.g. 'targets.json', or None."""
        d = self.meta.get(name)
        return None if d is None else MetaFile(d, name)

    def version_of(self, name):
        return self.meta[name]["version"]


class Targets(Signed):
    type = TARGETS

    def __init__(self, d):
        self._common(d)
        targets = _get(d, "targets", dict, "targets")
        for path in targets:
            TargetFile(path, targets[path])  # validate every entry now
        self.targets = targets  # parsed dict; TargetFile made on lookup
        self.delegations = None
        if "delegations" in d:
            self.delegations = Delegations(d["delegations"], "targets.delegations")

    def get_target(self, path):
        d = self.targets.get(path)
        if d is None:
            return None
        return TargetFile(path, d)

    def get_role(self, name):
        if self.delegations is None:
            return None
        return self.delegations.get_role(name)

    @property
    def keys(self):
        return self.delegations.keys if self.delegations is not None else {}


_CLASSES = {ROOT: Root, TIMESTAMP: Timestamp, SNAPSHOT: Snapshot, TARGETS: Targets}


# ---------------------------------------------------------------- envelope


def _is_stream(data):
    return hasattr(data, "readinto")


def feed(data, check):
    """Run a HashCheck over `data` (bytes, or a binary file object that is
    read through in 1 KiB pieces and rewound)."""
    if not _is_stream(data):
        check.update(data)
        return
    buf = bytearray(1024)
    mv = memoryview(buf)
    while True:
        n = data.readinto(buf)
        if not n:
            break
        check.update(mv[:n])
    data.seek(0)


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


def _parse_json(data):
    try:
        if _is_stream(data):
            return json.load(data)
        if isinstance(data, (bytes, bytearray, memoryview)):
            return json.loads(data)
        raise TypeError("metadata must be bytes or a binary file")
    except (ValueError, RuntimeError, TypeError) as e:
        # ValueError: bad JSON (or bad UTF-8); RuntimeError: recursion depth
        # on CPython's parser; TypeError: MicroPython on odd input.
        raise FormatError("not JSON: %s" % e)


def _open_envelope(data):
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


def load(data, expected_type, envelope=ENVELOPE_METADATA):
    """Parse metadata of the given top-level type ('root', 'timestamp',
    'snapshot', 'targets' - delegated roles are 'targets') wrapped in the
    given envelope type (ENVELOPE_METADATA or ENVELOPE_SIMPLE = DSSE).

    `data` is bytes, or a binary file object (parsed straight from the
    stream, so the raw file never sits in RAM next to its parsed form).
    Returns (signed object, signed part, {keyid: sig hex str}); the signed
    part is what check_signatures() verifies: the signed dict (its
    canonical JSON was signed) or a DssePayload (its PAE was signed).
    Raises FormatError (a RepositoryError) on anything malformed."""
    if envelope not in ENVELOPE_TYPES:
        raise ValueError("unknown envelope type %r" % envelope)
    if envelope == ENVELOPE_SIMPLE:
        if not (_is_stream(data) or isinstance(data, (bytes, bytearray, memoryview))):
            raise FormatError("not JSON: metadata must be bytes or a binary file")
        signed, signed_part, sigs = _open_envelope(data)
        data = None
        if not isinstance(signed, dict):
            _fail("DSSE payload must be a JSON object")
        return _finish_load(signed, signed_part, sigs, expected_type)
    doc = _parse_json(data)
    data = None
    if not isinstance(doc, dict):
        _fail("metadata must be a JSON object")
    if "payload" in doc and "signed" not in doc:
        _fail("expected traditional TUF metadata, got a DSSE envelope")
    signed = doc.get("signed")
    sigs = doc.get("signatures")
    doc = None
    if not isinstance(signed, dict):
        _fail("metadata lacks a 'signed' object")
    if not isinstance(sigs, list):
        _fail("metadata lacks a 'signatures' list")
    return _finish_load(signed, signed, sigs, expected_type)


def _finish_load(signed, signed_part, sigs, expected_type):
    signatures = {}
    for s in sigs:
        if not isinstance(s, dict):
            _fail("signature must be an object")
        keyid = s.get("keyid")
        sig = s.get("sig")
        if not isinstance(keyid, str) or not isinstance(sig, str):
            _fail("signature needs string 'keyid' and 'sig'")
        if keyid in signatures:
            _fail("multiple signatures for keyid %s" % keyid)
        signatures[keyid] = sig
    cls = _CLASSES.get(expected_type)
    if cls is None:
        raise ValueError("unknown metadata type %r" % expected_type)
    obj = cls(signed)
    return obj, signed_part, signatures


def signed_bytes(signed_dict):
    """Canonical JSON of the signed part: the bytes that were signed."""
    try:
        return canonjson.encode_canonical(signed_dict)
    except ValueError as e:  # CanonicalJSONError is a ValueError
        raise FormatError("signed part is not canonical-JSON encodable: %s" % e)


class _FanOut:
    # Streams the canonical encoding to every pending verifier through one
    # small buffer (few, larger updates: cheaper for the pure-Python hashes).
    def __init__(self, verifiers):
        self.vs = verifiers
        self.buf = bytearray(512)
        self.mv = memoryview(self.buf)
        self.n = 0

    def write(self, piece):
        k = len(piece)
        if self.n + k > len(self.buf):
            self.flush()
            if k > len(self.buf):
                for v in self.vs:
                    v.update(piece)
                return
        self.buf[self.n:self.n + k] = piece
        self.n += k

    def flush(self):
        if self.n:
            chunk = self.mv[:self.n]
            for v in self.vs:
                v.update(chunk)
            self.n = 0


def check_signatures(signed_dict, signatures, checks):
    """Count valid signatures for several roles in one pass.

    checks: [(role, keys)] where role has keyids/threshold and keys maps
    keyid -> key dict. Returns [count] (distinct keys - by key id and by
    public value - of each role with a valid signature). The canonical encoding of `signed_dict` is streamed
    once into all needed verifiers and never held whole. A key of an
    unsupported type, or a signature that is not hex, does not count."""
    pending = {}
    plan = []
    for role, keys in checks:
        ids = []
        for keyid in role.keyids:
            key = keys.get(keyid)
            sig = signatures.get(keyid)
            if key is None or sig is None:
                continue
            dk = (keyid, key["keytype"], key["scheme"], key["keyval"]["public"], sig)
            if dk not in pending:
                try:
                    raw = binascii.unhexlify(sig)
                    pending[dk] = _verify.load_key(key).begin(raw)
                except (ValueError, TypeError):
                    # bad hex, UnsupportedKeyError (a ValueError), bad key
                    continue
            ids.append(dk)
        plan.append(ids)
    fan = _FanOut(list(pending.values()))
    if isinstance(signed_dict, DssePayload):
        # DSSE: the signatures cover PAE(payloadType, payload)
        signed_dict.write_to(fan.write)
    else:
        try:
            canonjson.encode_canonical(signed_dict, fan.write)
        except ValueError as e:  # CanonicalJSONError is a ValueError
            raise FormatError("signed part is not canonical-JSON encodable: %s" % e)
    fan.flush()
    fan = None
    ok = {}
    for dk in pending:
        try:
            ok[dk] = bool(pending[dk].finish())
        except ValueError:
            ok[dk] = False
    # Count distinct public keys: a root that lists one key under two key
    # ids must not let one private key count twice toward a threshold.
    counts = []
    for ids in plan:
        seen = set()
        for dk in ids:
            if ok.get(dk):
                seen.add((dk[1], dk[3]))
        counts.append(len(seen))
    return counts


def verify_role(role, keys, signed_dict, signatures, label):
    """Raise UnsignedMetadataError unless `role.threshold` distinct keys of
    `role.keyids` (looked up in `keys`) produced a valid signature."""
    count = check_signatures(signed_dict, signatures, [(role, keys)])[0]
    if count < role.threshold:
        raise UnsignedMetadataError(
            "%s: %d of %d required signatures" % (label, count, role.threshold)
        )
    return count


def delegation_of(delegator, role_name):
    role = delegator.get_role(role_name)
    if role is None:
        raise RepositoryError("no delegation for role %r" % role_name)
    return role


def verify_delegate(delegator, role_name, signed_dict, signatures):
    """Check the signatures of `role_name` against the keys/threshold that
    `delegator` (Root or Targets) assigns to it."""
    return verify_role(delegation_of(delegator, role_name), delegator.keys, signed_dict, signatures, role_name)
