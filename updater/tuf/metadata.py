# The TUF metadata model (spec v1.0.x): strict validation of the signed part
# of root, timestamp, snapshot and targets (delegations included), as strict
# as python-tuf's Metadata API. Objects keep only what the client needs: the
# target list of a Targets role stays the parsed dict (every entry validated
# on load); a TargetFile object is made only for the target looked up.
# Parsing the envelopes is envelope.py/dsse.py, signatures signatures.py,
# hashes hashes.py, path patterns patterns.py.
import hashlib
import json

from updater.tuf.errors import FormatError
from updater.tuf.hashes import HashCheck, feed, is_stream as _is_stream
from updater.tuf.patterns import path_hash as _path_hash, path_matches

# ---------------------------------------------------------------- fields
# Strict checks of JSON fields, shared with the envelopes: every malformed
# input raises FormatError (a RepositoryError), nothing else escapes (see
# tests/host/test_tuf_fuzz.py).


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


def parse_json(data):
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


# ---------------------------------------------------------------- model

ROOT = "root"
TIMESTAMP = "timestamp"
SNAPSHOT = "snapshot"
TARGETS = "targets"
TOP_LEVEL_ROLES = (ROOT, TIMESTAMP, SNAPSHOT, TARGETS)

# The major version of the TUF specification we implement (python-tuf
# accepts any "1.x" or "1.x.y").
SPEC_MAJOR = "1"

def _check_hashes_field(v, where):
    if not isinstance(v, dict) or not v:
        fail("%s: hashes must be a non-empty object" % where)
    for k in v:
        if not isinstance(k, str) or not isinstance(v[k], str):
            fail("%s: hashes must map strings to strings" % where)
    return v


def _check_length_field(v, where):
    if not is_int(v) or v < 0:
        fail("%s: length must be an integer >= 0" % where)
    return v


class MetaFile:
    """Entry of timestamp/snapshot 'meta': version, optional length/hashes."""

    def __init__(self, d, where):
        check_dict(d, where)
        self.version = get(d, "version", "int", where)
        if self.version <= 0:
            fail("%s: version must be > 0" % where)
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
        check_dict(d, where)
        self.path = path
        self.length = _check_length_field(get(d, "length", "int", where), where)
        self.hashes = _check_hashes_field(get(d, "hashes", dict, where), where)
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
    check_dict(keys, where)
    for keyid in keys:
        k = keys[keyid]
        w = "%s[%s]" % (where, keyid)
        check_dict(k, w)
        get(k, "keytype", str, w)
        get(k, "scheme", str, w)
        kv = get(k, "keyval", dict, w)
        get(kv, "public", str, w)
    return keys


class Role:
    """keyids + threshold (a top-level role in root, or the common part of a
    delegated role)."""

    def __init__(self, d, where):
        check_dict(d, where)
        self.keyids = str_list(get(d, "keyids", list, where), where + ".keyids", True)
        self.threshold = get(d, "threshold", "int", where)
        if self.threshold < 1:
            fail("%s: threshold must be >= 1" % where)

    def same_as(self, other):
        return (
            other is not None
            and self.threshold == other.threshold
            and sorted(self.keyids) == sorted(other.keyids)
        )


class DelegatedRole(Role):
    def __init__(self, d, where):
        Role.__init__(self, d, where)
        self.name = get(d, "name", str, where)
        if not self.name or self.name in TOP_LEVEL_ROLES:
            fail("%s: delegated role name %r not allowed" % (where, self.name))
        self.terminating = get(d, "terminating", bool, where)
        self.paths = None
        self.path_hash_prefixes = None
        if "paths" in d:
            self.paths = str_list(d["paths"], where + ".paths", False)
        if "path_hash_prefixes" in d:
            self.path_hash_prefixes = str_list(
                d["path_hash_prefixes"], where + ".path_hash_prefixes", False
            )
        if (self.paths is None) == (self.path_hash_prefixes is None):
            fail("%s: exactly one of paths, path_hash_prefixes must be set" % where)

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
        self.bit_length = get(d, "bit_length", "int", where)
        if not 1 <= self.bit_length <= 32:
            fail("%s: bit_length must be 1..32" % where)
        self.name_prefix = get(d, "name_prefix", str, where)
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
        check_dict(d, where)
        self.keys = _check_keys(get(d, "keys", dict, where), where + ".keys")
        self.roles = None  # list of DelegatedRole, in metadata order
        self.succinct = None
        has_roles = "roles" in d
        has_succ = "succinct_roles" in d
        if has_roles == has_succ:
            fail("%s: exactly one of roles, succinct_roles must be set" % where)
        if has_roles:
            lst = d["roles"]
            if not isinstance(lst, list):
                fail("%s.roles must be a list" % where)
            self.roles = []
            seen = set()
            for i in range(len(lst)):
                r = DelegatedRole(lst[i], "%s.roles[%d]" % (where, i))
                if r.name in seen:
                    fail("%s: duplicate role %r" % (where, r.name))
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
        check_dict(d, where)
        t = get(d, "_type", str, where)
        if t != self.type:
            fail("expected _type '%s', got '%s'" % (self.type, t))
        self.version = get(d, "version", "int", where)
        if self.version <= 0:
            fail("%s: version must be > 0" % where)
        spec = get(d, "spec_version", str, where)
        parts = spec.split(".")
        if len(parts) not in (2, 3):
            fail("%s: bad spec_version %r" % (where, spec))
        for p in parts:
            if not p or not p.isdigit():
                fail("%s: bad spec_version %r" % (where, spec))
        if parts[0] != SPEC_MAJOR:
            fail("%s: unsupported spec_version %r" % (where, spec))
        self.spec_version = spec
        self.expires_str = get(d, "expires", str, where)
        self.expires = parse_expires(self.expires_str)

    def is_expired(self, now):
        return now >= self.expires


class Root(Signed):
    type = ROOT

    def __init__(self, d):
        self._common(d)
        self.keys = _check_keys(get(d, "keys", dict, "root"), "root.keys")
        roles = get(d, "roles", dict, "root")
        if sorted(roles) != sorted(TOP_LEVEL_ROLES):
            fail("root.roles must be exactly root, timestamp, snapshot, targets")
        self.roles = {}
        for name in TOP_LEVEL_ROLES:
            self.roles[name] = Role(roles[name], "root.roles." + name)
        cs = d.get("consistent_snapshot", False)
        if not isinstance(cs, bool):
            fail("root.consistent_snapshot must be a boolean")
        self.consistent_snapshot = cs

    def get_role(self, name):
        return self.roles.get(name)


class Timestamp(Signed):
    type = TIMESTAMP

    def __init__(self, d):
        self._common(d)
        meta = get(d, "meta", dict, "timestamp")
        if "snapshot.json" not in meta:
            fail("timestamp.meta lacks snapshot.json")
        self.snapshot_meta = MetaFile(meta["snapshot.json"], "timestamp.meta[snapshot.json]")


class Snapshot(Signed):
    type = SNAPSHOT

    def __init__(self, d):
        self._common(d)
        meta = get(d, "meta", dict, "snapshot")
        for name in meta:
            if not isinstance(name, str):
                fail("snapshot.meta keys must be strings")
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
        targets = get(d, "targets", dict, "targets")
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


CLASSES = {ROOT: Root, TIMESTAMP: Timestamp, SNAPSHOT: Snapshot, TARGETS: Targets}
