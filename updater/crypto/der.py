# Minimal strict DER reader and PEM decoder for public keys and ECDSA
# signatures (the subset cryptography / securesystemslib write).
#
# Strict means: single-byte tags only, definite minimal lengths (no
# indefinite form, no leading zero length octets, long form only for
# lengths >= 128), every length bounded by the enclosing element, INTEGERs
# minimally encoded and non-negative, nothing trailing. Any violation raises
# DERError (a ValueError) with a short reason; no other exception escapes
# for bytes input.
import binascii

TAG_INTEGER = 0x02
TAG_BIT_STRING = 0x03
TAG_NULL = 0x05
TAG_OID = 0x06
TAG_SEQUENCE = 0x30

# Upper bound on any single PEM document we accept (an RSA-4096 SPKI is
# about 800 characters of PEM).
MAX_PEM_CHARS = 8192

_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


class DERError(ValueError):
    """Malformed DER or PEM."""


def read_tlv(buf, pos, end):
    """Read one element of buf[pos:end]. Returns (tag, value_start,
    value_end); the next element starts at value_end."""
    if pos + 2 > end:
        raise DERError("truncated element")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise DERError("multi-byte tags not supported")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        nbytes = first & 0x7F
        if nbytes == 0:
            raise DERError("indefinite length")
        if nbytes > 3:
            raise DERError("length too large")
        if pos + nbytes > end:
            raise DERError("truncated length")
        if buf[pos] == 0:
            raise DERError("non-minimal length")
        length = 0
        for i in range(nbytes):
            length = (length << 8) | buf[pos + i]
        pos += nbytes
        if length < 0x80:
            raise DERError("non-minimal length")
    if length > end - pos:
        raise DERError("length exceeds data")
    return tag, pos, pos + length


def expect(buf, pos, end, tag):
    t, vs, ve = read_tlv(buf, pos, end)
    if t != tag:
        raise DERError("expected tag 0x%02x, got 0x%02x" % (tag, t))
    return vs, ve


def read_uint(buf, pos, end):
    """A non-negative INTEGER. Returns (value, next_pos)."""
    vs, ve = expect(buf, pos, end, TAG_INTEGER)
    if ve == vs:
        raise DERError("empty INTEGER")
    if buf[vs] & 0x80:
        raise DERError("negative INTEGER")
    if buf[vs] == 0 and ve - vs > 1 and not (buf[vs + 1] & 0x80):
        raise DERError("non-minimal INTEGER")
    return int.from_bytes(bytes(buf[vs:ve]), "big"), ve


def pem_decode(text, label="PUBLIC KEY"):
    """DER bytes inside one '-----BEGIN <label>-----' block. Accepts str or
    bytes; only base64 text and whitespace may appear between the markers,
    nothing but whitespace outside them."""
    if isinstance(text, str):
        try:
            text = text.encode()
        except UnicodeError:
            raise DERError("PEM is not ASCII")
    if not isinstance(text, (bytes, bytearray)):
        raise DERError("PEM must be text")
    if len(text) > MAX_PEM_CHARS:
        raise DERError("PEM too long")
    begin = b"-----BEGIN " + label.encode() + b"-----"
    endm = b"-----END " + label.encode() + b"-----"
    text = bytes(text).strip()
    if not text.startswith(begin):
        raise DERError("missing PEM BEGIN line")
    if not text.endswith(endm):
        raise DERError("missing PEM END line")
    body = text[len(begin):len(text) - len(endm)]
    # Collect base64 characters, allowing only whitespace between them and
    # '=' padding only at the very end.
    out = bytearray()
    pad = 0
    for c in body:
        if c in b" \t\r\n":
            continue
        if c == 0x3D:  # '='
            pad += 1
            out.append(c)
            continue
        if pad or c not in _B64:
            raise DERError("bad base64 in PEM")
        out.append(c)
    if pad > 2 or not out or len(out) % 4:
        raise DERError("bad base64 length in PEM")
    try:
        return binascii.a2b_base64(bytes(out))
    except ValueError:  # binascii.Error is a ValueError on CPython
        raise DERError("bad base64 in PEM")


# DER encodings (tag + length + value) of the OIDs we accept.
OID_RSA = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"  # rsaEncryption
OID_EC = b"\x06\x07\x2a\x86\x48\xce\x3d\x02\x01"  # id-ecPublicKey
OID_P256 = b"\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07"  # prime256v1


def parse_spki(der):
    """SubjectPublicKeyInfo -> ("rsa", (n, e)) or ("ec-p256", point_bytes).
    point_bytes is the SEC1 encoded point (not yet validated)."""
    der = bytes(der)
    end = len(der)
    vs, ve = expect(der, 0, end, TAG_SEQUENCE)
    if ve != end:
        raise DERError("trailing data after SubjectPublicKeyInfo")
    alg_s, alg_e = expect(der, vs, ve, TAG_SEQUENCE)
    bs, be = expect(der, alg_e, ve, TAG_BIT_STRING)
    if be != ve:
        raise DERError("trailing data in SubjectPublicKeyInfo")
    if be - bs < 2 or der[bs] != 0:
        raise DERError("BIT STRING with unused bits")
    key = der[bs + 1:be]
    alg = der[alg_s:alg_e]
    if alg == OID_RSA + b"\x05\x00":
        n_s, n_e = expect(key, 0, len(key), TAG_SEQUENCE)
        if n_e != len(key):
            raise DERError("trailing data after RSAPublicKey")
        n, pos = read_uint(key, n_s, n_e)
        e, pos = read_uint(key, pos, n_e)
        if pos != n_e:
            raise DERError("trailing data in RSAPublicKey")
        return "rsa", (n, e)
    if alg == OID_EC + OID_P256:
        return "ec-p256", key
    raise DERError("unsupported public key algorithm")


def parse_ecdsa_sig(sig):
    """DER Ecdsa-Sig-Value SEQUENCE { r INTEGER, s INTEGER } -> (r, s)."""
    end = len(sig)
    vs, ve = expect(sig, 0, end, TAG_SEQUENCE)
    if ve != end:
        raise DERError("trailing data after signature")
    r, pos = read_uint(sig, vs, ve)
    s, pos = read_uint(sig, pos, ve)
    if pos != ve:
        raise DERError("trailing data in signature")
    return r, s
