"""Hypothesis fuzzing of the device crypto (updater/crypto) on CPython.

* canonical JSON: random JSON-like objects encode byte-identically to
  securesystemslib.formats.encode_canonical; anything securesystemslib
  refuses, we refuse with CanonicalJSONError.
* verify_signature / DER / PEM: random and mutated signatures, keys and
  encodings only ever give True/False or UnsupportedKeyError (DERError from
  the parsers), agree with `cryptography` on accept/reject, and what our strict
  parsers accept decodes to the same numbers as cryptography's loader.
"""
from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from securesystemslib.exceptions import FormatError
from securesystemslib.formats import encode_canonical as sslib_encode

from updater.crypto import der, ed25519, p256
from updater.crypto.canonjson import CanonicalJSONError, encode_canonical
from updater.crypto.sha512 import sha512
from updater.crypto.verify import UnsupportedKeyError, load_key, verify_signature

FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ JSON

json_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**200), max_value=2**200) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@FUZZ
@given(json_values)
def test_canonical_equals_securesystemslib(obj):
    assert encode_canonical(obj) == sslib_encode(obj).encode("utf-8")


@FUZZ
@given(st.recursive(
    json_scalars | st.floats(allow_nan=False),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4),
    max_leaves=15,
))
def test_canonical_rejects_exactly_what_securesystemslib_rejects(obj):
    try:
        want = sslib_encode(obj).encode("utf-8")
    except FormatError:
        with pytest.raises(CanonicalJSONError):
            encode_canonical(obj)
    else:
        assert encode_canonical(obj) == want


# ------------------------------------------------------------------ sha512


@FUZZ
@given(st.binary(max_size=700), st.lists(st.integers(min_value=0, max_value=300), max_size=6))
def test_pure_sha512_streaming_equals_hashlib(data, cuts):
    h = sha512()
    pos = 0
    for c in cuts:
        h.update(data[pos:pos + c])
        pos += c
    h.update(data[pos:])
    assert h.digest() == hashlib.sha512(data).digest()


# ------------------------------------------------------------------ keys

_ED = Ed25519PrivateKey.generate()
_EC = ec.generate_private_key(ec.SECP256R1())
_RSA = rsa.generate_private_key(65537, 2048)
_MSG = b'{"signed":{"_type":"timestamp","version":1}}'


def _pem(pub) -> str:
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


ED_KEY = {"keytype": "ed25519", "scheme": "ed25519",
          "keyval": {"public": _ED.public_key().public_bytes_raw().hex()}}
EC_KEY = {"keytype": "ecdsa", "scheme": "ecdsa-sha2-nistp256", "keyval": {"public": _pem(_EC.public_key())}}
RSA_KEY = {"keytype": "rsa", "scheme": "rsassa-pss-sha256", "keyval": {"public": _pem(_RSA.public_key())}}
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
SIGS = {
    "ed25519": (ED_KEY, _ED.sign(_MSG)),
    "ecdsa": (EC_KEY, _EC.sign(_MSG, ec.ECDSA(hashes.SHA256()))),
    "rsa": (RSA_KEY, _RSA.sign(_MSG, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())),
}


def _reference(scheme: str, sig: bytes, msg: bytes) -> bool:
    try:
        if scheme == "ed25519":
            _ED.public_key().verify(sig, msg)
        elif scheme == "ecdsa":
            _EC.public_key().verify(sig, msg, ec.ECDSA(hashes.SHA256()))
        else:
            _RSA.public_key().verify(sig, msg, _PSS, hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """edits: (op, position, value); op 0 = xor byte, 1 = delete, 2 = insert."""
    out = bytearray(data)
    for op, pos, val in edits:
        if not out and op != 2:
            continue
        pos = pos % (len(out) + (1 if op == 2 else 0))
        if op == 0:
            out[pos] ^= val or 1
        elif op == 1:
            del out[pos]
        else:
            out.insert(pos, val)
    return bytes(out)


edits = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=3)


def test_reference_signatures_verify():
    for scheme, (key, sig) in SIGS.items():
        assert verify_signature(key, sig, _MSG), scheme


@FUZZ
@given(st.sampled_from(sorted(SIGS)), edits)
def test_mutated_signature_agrees_with_cryptography(scheme, ed):
    key, sig = SIGS[scheme]
    bad = _mutate(sig, ed)
    got = verify_signature(key, bad, _MSG)
    assert got is _reference(scheme, bad, _MSG)


@FUZZ
@given(st.sampled_from(sorted(SIGS)), edits)
def test_mutated_message_agrees_with_cryptography(scheme, ed):
    key, sig = SIGS[scheme]
    msg = _mutate(_MSG, ed)
    assert verify_signature(key, sig, msg) is _reference(scheme, sig, msg)


@FUZZ
@given(st.sampled_from(sorted(SIGS)), st.binary(max_size=600), st.binary(max_size=200))
def test_random_signature_is_false(scheme, sig, msg):
    key, _ = SIGS[scheme]
    assert verify_signature(key, sig, msg) is False


def _our_key_numbers(key):
    k = load_key(key)
    if isinstance(k, p256.P256Key):
        return ("ec", k.x, k.y)
    return ("rsa", k.n, k.e)


def _their_key_numbers(pem: str):
    pub = serialization.load_pem_public_key(pem.encode())
    if isinstance(pub, ec.EllipticCurvePublicKey):
        if not isinstance(pub.curve, ec.SECP256R1):
            return None
        nums = pub.public_numbers()
        return ("ec", nums.x, nums.y)
    if isinstance(pub, rsa.RSAPublicKey):
        nums = pub.public_numbers()
        return ("rsa", nums.n, nums.e)
    return None


def _wrap(der_bytes: bytes) -> str:
    b64 = base64.b64encode(der_bytes).decode()
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64)) + "\n-----END PUBLIC KEY-----\n"


@FUZZ
@given(st.sampled_from(["ecdsa", "rsa"]), edits)
def test_mutated_spki_der_clean_and_consistent(scheme, ed):
    key, sig = SIGS[scheme]
    spki = der.pem_decode(key["keyval"]["public"])
    bad_der = _mutate(spki, ed)
    bad = dict(key, keyval={"public": _wrap(bad_der)})
    try:
        ours = _our_key_numbers(bad)
    except UnsupportedKeyError:
        return
    # Whatever our strict reader accepts, OpenSSL loads as the same key.
    theirs = _their_key_numbers(bad["keyval"]["public"])
    assert ours == theirs
    assert verify_signature(bad, sig, _MSG) is (ours == _our_key_numbers(key))


@FUZZ
@given(st.sampled_from(["ecdsa", "rsa"]), edits)
def test_mutated_pem_text_clean(scheme, ed):
    key, sig = SIGS[scheme]
    text = _mutate(key["keyval"]["public"].encode(), ed).decode("latin-1")
    bad = dict(key, keyval={"public": text})
    try:
        result = verify_signature(bad, sig, _MSG)
    except UnsupportedKeyError:
        return
    assert isinstance(result, bool)


@FUZZ
@given(st.binary(max_size=120))
def test_der_parsers_raise_only_der_error(data):
    for fn in (der.parse_ecdsa_sig, der.parse_spki):
        try:
            fn(data)
        except der.DERError:
            pass


@FUZZ
@given(st.binary(max_size=80))
def test_ecdsa_sig_parser_matches_cryptography(data):
    try:
        ours = der.parse_ecdsa_sig(data)
    except der.DERError:
        return
    assert decode_dss_signature(data) == ours


@FUZZ
@given(st.binary(min_size=32, max_size=32))
def test_ed25519_point_decoding_roundtrips(raw):
    try:
        pt = ed25519.decode_point(raw)
    except ed25519.Ed25519PointError:
        return
    # Strict decoding: whatever decodes re-encodes to the same bytes.
    assert ed25519.encode_point(pt) == raw
    # and OpenSSL accepts it as a public key.
    Ed25519PublicKey.from_public_bytes(raw)


key_dicts = st.fixed_dictionaries({
    "keytype": st.sampled_from(["ed25519", "ecdsa", "ecdsa-sha2-nistp256", "rsa", "x", ""]) | st.text(max_size=5),
    "scheme": st.sampled_from(["ed25519", "ecdsa-sha2-nistp256", "rsassa-pss-sha256", "rsa-pkcs1v15-sha256"]),
    "keyval": st.fixed_dictionaries({"public": st.text(max_size=100) | st.binary(max_size=40).map(bytes.hex)}),
}) | st.none() | st.integers() | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)


@FUZZ
@given(key_dicts, st.binary(max_size=100), st.binary(max_size=50))
def test_random_keys_only_false_or_unsupported(key, sig, msg):
    try:
        assert verify_signature(key, sig, msg) is False
    except UnsupportedKeyError:
        pass


def _as_code_units(s: str) -> str:
    """The string as MicroPython's json.loads leaves it: every non-BMP
    character as two surrogate code units."""
    b = s.encode("utf-16-be")
    return "".join(chr(int.from_bytes(b[i:i + 2], "big")) for i in range(0, len(b), 2))


@FUZZ
@given(st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=6))
def test_surrogate_pairs_encode_like_combined_characters(d):
    split = {_as_code_units(k): _as_code_units(v) for k, v in d.items()}
    assert encode_canonical(split) == sslib_encode(d).encode("utf-8")
