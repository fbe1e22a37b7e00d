"""COSE_Encrypt0 with AES-CCM-16-64-128, exactly as SEALING.md specifies.

Pure functions, no I/O: ``parse`` (strict structure checks), ``open_sealed``
(AAD + nonce + AES-CCM verify/decrypt) and ``seal`` (the host-side sealer used by
the benchmark and the demo; tests seal with pycose instead, independently).
"""
from __future__ import annotations

import functools
import io
from typing import NamedTuple

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

COSE_ENCRYPT0_TAG = 16
ALG_AES_CCM_16_64_128 = 10
HDR_ALG = 1
HDR_KID = 4
HDR_PARTIAL_IV = 6
PROTECTED = b"\xa1\x01\x0a"  # {1: 10}
NONCE_LEN = 13
TAG_LEN = 8
MAX_PIV_LEN = 5
MAX_KID_LEN = 16
MAX_MESSAGE = 1024
MAX_SEQ = (1 << 40) - 1


class CoseError(ValueError):
    """The bytes are not a well-formed COSE_Encrypt0 of the agreed profile."""


class AuthError(Exception):
    """AES-CCM authentication failed: wrong key, wrong AAD (topic) or altered bytes."""


class Sealed(NamedTuple):
    """A parsed (not yet verified) COSE_Encrypt0. (Immutable as a tuple: made 0.4 us
    faster than a frozen dataclass, once per message.)"""

    kid: bytes
    partial_iv: bytes
    ciphertext: bytes

    @property
    def seq(self) -> int:
        return int.from_bytes(self.partial_iv, "big")


def partial_iv(seq: int) -> bytes:
    """Sequence number -> Partial IV: big-endian, leading zero bytes stripped."""
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"sequence number out of range: {seq}")
    return seq.to_bytes(max(1, (seq.bit_length() + 7) // 8), "big")


def nonce(base_iv: bytes, piv: bytes) -> bytes:
    """RFC 9052 §3.1: left-pad the Partial IV to 13 bytes, XOR with the context IV."""
    if len(base_iv) != NONCE_LEN:
        raise ValueError("base IV must be 13 bytes")
    return (int.from_bytes(base_iv, "big") ^ int.from_bytes(piv, "big")).to_bytes(NONCE_LEN, "big")


def aad(external_aad: bytes) -> bytes:
    """The Enc_structure ["Encrypt0", protected, external_aad], CBOR-encoded."""
    return cbor2.dumps(["Encrypt0", PROTECTED, external_aad])


@functools.lru_cache(maxsize=65536)
def topic_aad(topic: str) -> bytes:
    return aad(topic.encode("utf-8"))


def _decode_one(data: bytes) -> object:
    """Decode exactly one CBOR item; trailing bytes are an error."""
    fp = io.BytesIO(data)
    try:
        obj = cbor2.CBORDecoder(fp).decode()
    except (cbor2.CBORDecodeError, ValueError, EOFError, OverflowError, RecursionError) as exc:
        raise CoseError(f"bad CBOR: {exc}") from None
    if fp.tell() != len(data):
        raise CoseError(f"{len(data) - fp.tell()} trailing bytes after the CBOR item")
    return obj


_HEAD = b"\xd0\x83\x43" + PROTECTED + b"\xa2\x04"  # tag 16, array(3), bstr {1: 10}, map(2), key 4


def _bstr_at(data: bytes, i: int) -> tuple[int, int] | None:
    """(start, end) of the byte string whose minimal head is at ``data[i]``, else None."""
    h = data[i] if i < len(data) else -1
    if 0x40 <= h <= 0x57:
        start, n = i + 1, h - 0x40
    elif h == 0x58 and i + 1 < len(data) and data[i + 1] >= 24:
        start, n = i + 2, data[i + 1]
    elif h == 0x59 and i + 2 < len(data) and data[i + 1]:
        start, n = i + 3, int.from_bytes(data[i + 1:i + 3], "big")
    else:
        return None
    return start, start + n


def _parse_canonical(data: bytes) -> Sealed | None:
    """The profile's one byte layout, read directly: the Sealed when `data` is
    exactly the deterministic encoding a valid message has, else None (the full
    parser then names what is wrong). Accepts nothing the full parser refuses
    (tests/host/test_cose_fast_path.py compares them)."""
    if not data.startswith(_HEAD):
        return None
    # kid and Partial IV are at most 16 and 5 bytes: their minimal heads are one
    # byte (0x41..0x50, 0x41..0x45); any other head is not this layout.
    i = len(_HEAD)
    try:
        nk = data[i] - 0x40
        if not 1 <= nk <= MAX_KID_LEN or data[i + 1 + nk] != HDR_PARTIAL_IV:
            return None
        p = i + 3 + nk  # first byte of the Partial IV
        npiv = data[p - 1] - 0x40
        if not 1 <= npiv <= MAX_PIV_LEN or (npiv > 1 and data[p] == 0):
            return None
    except IndexError:
        return None
    ct = _bstr_at(data, p + npiv)
    if ct is None or ct[1] != len(data) or ct[1] - ct[0] < TAG_LEN:
        return None
    return Sealed(kid=data[i + 1:i + 1 + nk], partial_iv=data[p:p + npiv], ciphertext=data[ct[0]:])


def parse(data: bytes) -> Sealed:
    """Check the structure against the profile and return its fields."""
    if len(data) > MAX_MESSAGE:
        raise CoseError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    data = bytes(data)
    fast = _parse_canonical(data)
    if fast is not None:
        return fast
    return parse_full(data)


def parse_full(data: bytes) -> Sealed:
    """The general CBOR decode with every check and its error (see ``parse``)."""
    obj = _decode_one(data)
    if not isinstance(obj, cbor2.CBORTag) or obj.tag != COSE_ENCRYPT0_TAG:
        raise CoseError("not a COSE_Encrypt0 (CBOR tag 16 required)")
    arr = obj.value
    if not isinstance(arr, (list, tuple)) or len(arr) != 3:
        raise CoseError("COSE_Encrypt0 must be a 3-element array")
    prot, unprot, ct = arr
    if not isinstance(prot, bytes) or prot != PROTECTED:
        raise CoseError("protected header must be exactly {1: 10} (AES-CCM-16-64-128)")
    if not isinstance(unprot, dict) or set(unprot) != {HDR_KID, HDR_PARTIAL_IV}:
        raise CoseError("unprotected header must hold exactly kid (4) and Partial IV (6)")
    kid, piv = unprot[HDR_KID], unprot[HDR_PARTIAL_IV]
    if not isinstance(kid, bytes) or not 1 <= len(kid) <= MAX_KID_LEN:
        raise CoseError("kid must be a byte string of 1..16 bytes")
    if not isinstance(piv, bytes) or not 1 <= len(piv) <= MAX_PIV_LEN:
        raise CoseError("Partial IV must be a byte string of 1..5 bytes")
    if len(piv) > 1 and piv[0] == 0:
        raise CoseError("Partial IV is not minimally encoded")
    if not isinstance(ct, bytes) or len(ct) < TAG_LEN:
        raise CoseError("ciphertext must be a byte string of at least 8 bytes")
    canonical = cbor2.dumps(cbor2.CBORTag(COSE_ENCRYPT0_TAG, [PROTECTED, {HDR_KID: kid, HDR_PARTIAL_IV: piv}, ct]))
    if canonical != data:
        raise CoseError("not the deterministic encoding (shortest lengths, kid before Partial IV)")
    return Sealed(kid=kid, partial_iv=piv, ciphertext=ct)


class Opener:
    """Verify-and-decrypt with one key (the AESCCM object is reused)."""

    def __init__(self, key: bytes, base_iv: bytes) -> None:
        if len(base_iv) != NONCE_LEN:
            raise ValueError("base IV must be 13 bytes")
        self._ccm = AESCCM(key, tag_length=TAG_LEN)
        self.base_iv = base_iv
        self._iv = int.from_bytes(base_iv, "big")

    def open(self, sealed: Sealed, topic: str) -> bytes:
        # the nonce as ``nonce()`` makes it, with the context IV converted once
        iv = (self._iv ^ int.from_bytes(sealed.partial_iv, "big")).to_bytes(NONCE_LEN, "big")
        try:
            return self._ccm.decrypt(iv, sealed.ciphertext, topic_aad(topic))
        except InvalidTag:
            raise AuthError("authentication tag does not verify") from None


def seal(plaintext: bytes, *, key: bytes, base_iv: bytes, kid: bytes, seq: int, topic: str) -> bytes:
    """Seal ``plaintext`` into a COSE_Encrypt0 (host-side sealer)."""
    piv = partial_iv(seq)
    ct = AESCCM(key, tag_length=TAG_LEN).encrypt(nonce(base_iv, piv), plaintext, topic_aad(topic))
    return cbor2.dumps(cbor2.CBORTag(COSE_ENCRYPT0_TAG, [PROTECTED, {HDR_KID: kid, HDR_PARTIAL_IV: piv}, ct]))
