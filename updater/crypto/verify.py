# Signature verification for TUF keys as python-tuf / securesystemslib write
# them. Pure Python on MicroPython's big integers and native sha256.
#
#   verify_signature(key, signature, message) -> bool
#     key:       {"keytype": ..., "scheme": ..., "keyval": {"public": ...}}
#     signature: raw bytes (the hex-decoded "sig" of a TUF signature)
#     message:   bytes that were signed (canonical JSON of "signed")
#   True for a good signature, False for any bad one (wrong value, wrong
#   length, malformed DER, ...). UnsupportedKeyError for an unknown
#   keytype/scheme or a public key that does not parse.
#
#   load_key(key) -> an object with .verify(signature, message) -> bool;
#   parses the public key once (a client verifying many signatures by the
#   same key can keep it). Streaming: v = load_key(key).begin(signature),
#   v.update(chunk) any number of times, v.finish() -> bool; e.g. with
#   canonjson.encode_canonical(signed, write=v.update) the canonical bytes
#   never exist in one piece (several verifiers can share one encoding pass).
#
# Supported (keytype, scheme):
#   ("ed25519", "ed25519")                       public: 64 hex chars, a
#                                                point not of small order
#   ("ecdsa" | "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256")
#                                                public: PEM SPKI, P-256
#   ("rsa", "rsassa-pss-sha256")                 public: PEM SPKI, 2048..4096
#                                                bits; any PSS salt length
# Scheme modules are imported on first use to keep the heap small; parsed
# keys are kept in a small bounded cache (see _CACHE).
import binascii


class UnsupportedKeyError(ValueError):
    """The key's type or scheme is not supported, or its public value is
    malformed."""


# Bound on the public value string we even look at.
_MAX_PUBLIC_CHARS = 8192

RSA_MIN_BITS = 2048
RSA_MAX_BITS = 4096


def _public(key):
    if not isinstance(key, dict):
        raise UnsupportedKeyError("key must be a dict")
    keytype = key.get("keytype")
    scheme = key.get("scheme")
    keyval = key.get("keyval")
    if not isinstance(keytype, str) or not isinstance(scheme, str):
        raise UnsupportedKeyError("key needs string keytype and scheme")
    if not isinstance(keyval, dict):
        raise UnsupportedKeyError("key needs a keyval dict")
    public = keyval.get("public")
    if not isinstance(public, str):
        raise UnsupportedKeyError("keyval.public must be a string")
    if len(public) > _MAX_PUBLIC_CHARS:
        raise UnsupportedKeyError("public key too long")
    return keytype, scheme, public


def _load_ed25519(public):
    from updater.crypto import ed25519

    if len(public) != 64:
        raise UnsupportedKeyError("ed25519 public key must be 64 hex characters")
    try:
        raw = binascii.unhexlify(public)
    except ValueError:
        raise UnsupportedKeyError("ed25519 public key is not hex")
    try:
        return ed25519.Ed25519Key(raw)
    except ed25519.Ed25519PointError as e:
        raise UnsupportedKeyError("ed25519 public key: %s" % e)


def _load_spki(public, want):
    from updater.crypto import der

    try:
        kind, value = der.parse_spki(der.pem_decode(public))
    except der.DERError as e:
        raise UnsupportedKeyError("public key PEM: %s" % e)
    if kind != want:
        raise UnsupportedKeyError("public key is %s, scheme needs %s" % (kind, want))
    return value


def _load_ecdsa_p256(public):
    from updater.crypto import p256

    point = _load_spki(public, "ec-p256")
    try:
        return p256.P256Key(point)
    except p256.P256PointError as e:
        raise UnsupportedKeyError("P-256 public key: %s" % e)


def _load_rsa_pss_sha256(public):
    from updater.crypto import rsa

    n, e = _load_spki(public, "rsa")
    bits = rsa.bit_length(n)
    if bits < RSA_MIN_BITS or bits > RSA_MAX_BITS:
        raise UnsupportedKeyError("RSA modulus of %d bits (need %d..%d)" % (bits, RSA_MIN_BITS, RSA_MAX_BITS))
    if e < 3 or not (e & 1) or rsa.bit_length(e) > 64 or not (n & 1):
        raise UnsupportedKeyError("bad RSA public exponent or modulus")
    return rsa.RSAPSSKey(n, e)


# Parsed keys by (keytype, scheme, public): a TUF refresh verifies with the
# same few keys over and over (root, then every role); parsing costs a modular
# square root for ed25519. Bounded: cleared when full.
_CACHE = {}
_CACHE_MAX = 16


def _load(keytype, scheme, public):
    if keytype == "ed25519" and scheme == "ed25519":
        return _load_ed25519(public)
    if keytype in ("ecdsa", "ecdsa-sha2-nistp256") and scheme == "ecdsa-sha2-nistp256":
        return _load_ecdsa_p256(public)
    if keytype == "rsa" and scheme == "rsassa-pss-sha256":
        return _load_rsa_pss_sha256(public)
    raise UnsupportedKeyError("unsupported keytype/scheme %s/%s" % (keytype, scheme))


def load_key(key):
    """Parse a TUF key dict into a verifier object (see module comment)."""
    keytype, scheme, public = _public(key)
    ck = (keytype, scheme, public)
    k = _CACHE.get(ck)
    if k is None:
        k = _load(keytype, scheme, public)  # raises before anything is cached
        if len(public) <= 1024:  # keeps the cache itself at <= ~16 KiB
            if len(_CACHE) >= _CACHE_MAX:
                _CACHE.clear()
            _CACHE[ck] = k
    return k


def verify_signature(key, signature, message):
    """True if `signature` (raw bytes) over `message` (bytes) is valid for
    the TUF key dict `key`; False otherwise. UnsupportedKeyError for a key
    this module cannot use."""
    verifier = load_key(key)
    if not isinstance(signature, (bytes, bytearray, memoryview)):
        return False
    if not isinstance(message, (bytes, bytearray, memoryview)):
        raise TypeError("message must be bytes")
    return verifier.verify(signature, message)
