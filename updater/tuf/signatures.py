# Signature thresholds: check_signatures() streams what was signed (the
# canonical JSON of the signed part, or the DSSE PAE) once into every
# verifier it needs (updater.crypto streaming verifiers), so the signed bytes
# are never held whole.
import binascii

from updater.crypto import canonjson
from updater.crypto import verify as _verify
from updater.tuf.errors import FormatError, RepositoryError, UnsignedMetadataError


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
    if not isinstance(signed_dict, dict):
        # a dsse.DssePayload: the signatures cover PAE(payloadType, payload)
        # (dsse.py is imported only for DSSE repositories: heap)
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
