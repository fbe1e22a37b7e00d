"""Generate the golden vectors for the device crypto tests (host only).

Run from the repository root:

    .venv/bin/python tests/device/data/crypto/make_vectors.py

Writes canonjson.json, sha512.json, ed25519.jsonl, ecdsa.jsonl and rsa.jsonl next
to this script. Every expectation is cross-checked against the host libraries
the TUF repository side uses (securesystemslib, cryptography, hashlib) before
it is written, so a vector that the reference stack would judge differently
fails here instead of being committed; the few deliberate differences (the
device refuses a key the host library would load) are listed per case in the
"sslib" field. Keys and signatures are random, so
re-running changes the files (the properties they encode do not).
"""
from __future__ import annotations

import hashlib
import json
import warnings
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, TargetFile, Timestamp

OUT = Path(__file__).resolve().parent

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ED_L = 2**252 + 27742317777372353535851937790883648493
ED_P = 2**255 - 19

# RFC 8032 section 7.1 TEST 1, 2, 3 and SHA(abc): (public, message, signature).
RFC8032 = [
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
     "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
     "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
     "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
     "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
]


# ---------------------------------------------------------------- helpers


def flip(b: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(b)
    out[index] ^= 1 << bit
    return bytes(out)


def sslib_result(key: dict, sig: bytes, msg: bytes) -> str:
    """What securesystemslib says: valid / invalid / unsupported."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            k = SSlibKey.from_dict("x", dict(key))
        except Exception:
            return "unsupported"
        from securesystemslib.exceptions import UnverifiedSignatureError
        from securesystemslib.signer import Signature

        if _key_broken(k):
            return "unsupported"
        try:
            k.verify_signature(Signature("x", sig.hex()), msg)
            return "valid"
        except UnverifiedSignatureError as e:
            # Includes VerificationError (a malformed signature that the
            # library refuses to even process) and an unsupported scheme.
            if "Unsupported public key" in repr(e.__cause__):
                return "unsupported"
            return "invalid"


def _key_broken(k: SSlibKey) -> bool:
    try:
        k._crypto_key()  # noqa: SLF001 - reference behaviour of the host stack
    except Exception:
        return True
    return False


def tuf_messages() -> list[bytes]:
    """Canonical bytes of real python-tuf metadata (what TUF signs)."""
    exp = datetime(2030, 1, 1, tzinfo=timezone.utc)
    root = Root(expires=exp)
    tgt = Targets(expires=exp)
    tgt.targets["firmware/pump-1.2.3.bin"] = TargetFile.from_data(
        "firmware/pump-1.2.3.bin", b"\x00firmware" * 50, ["sha256", "sha512"]
    )
    tgt.unrecognized_fields["x-note"] = 'quote " backslash \\ unicode \u00e9\u4e2d \U0001f600'
    msgs = []
    for signed in (root, tgt, Snapshot(expires=exp), Timestamp(expires=exp)):
        msgs.append(Metadata(signed).signed_bytes)
    return msgs


def case(name, key, sig, msg, expect, check_sslib=True):
    """One vector. `expect` is what the device must answer; `sslib` records
    what securesystemslib (on cryptography/OpenSSL) answers. They must agree
    unless check_sslib is False: the deliberate policy differences (strict
    point/PEM parsing, RSA >= 2048 bits, only the three TUF schemes) where the
    device refuses the key outright while the host library loads it."""
    got = sslib_result(key, sig, msg)
    if check_sslib:
        assert got == expect, f"{name}: securesystemslib says {got}, vector says {expect}"
    return {"name": name, "key": key, "sig": sig.hex(), "msg": msg.hex(), "expect": expect, "sslib": got}


def _probable_prime(n: int) -> bool:
    import secrets

    if n < 2:
        return False
    for sp in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % sp == 0:
            return n == sp
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for _ in range(40):
        a = secrets.randbelow(n - 3) + 2
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def rsa_key_exact_bits(bits: int, e: int = 65537) -> rsa.RSAPrivateKey:
    """An RSA key whose modulus has exactly `bits` bits (OpenSSL rounds odd
    sizes down, and 8k+1 bits is the case where EM is one byte shorter than
    the modulus)."""
    import secrets

    def prime(nbits: int) -> int:
        while True:
            c = secrets.randbits(nbits) | (1 << (nbits - 1)) | (1 << (nbits - 2)) | 1
            if (c - 1) % e and _probable_prime(c):
                return c

    while True:
        p = prime(bits - bits // 2)
        q = prime(bits // 2)
        n = p * q
        if p != q and n.bit_length() == bits:
            break
    d = pow(e, -1, (p - 1) * (q - 1))
    pub = rsa.RSAPublicNumbers(e, n)
    return rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), pub).private_key()


def pem_of(pub) -> str:
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def der_to_pem(der: bytes) -> str:
    import base64

    b64 = base64.b64encode(der).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"


def der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def der_int(v: int) -> bytes:
    b = v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big")
    return b"\x02" + der_len(len(b)) + b


def der_seq(body: bytes) -> bytes:
    return b"\x30" + der_len(len(body)) + body


# ---------------------------------------------------------------- canonical JSON


def make_canonjson() -> dict:
    objs = [
        {},
        [],
        "",
        0,
        -1,
        True,
        False,
        None,
        {"b": 1, "a": 2, "A": 3, "_": 4, "aa": 5, "": 6},
        {"x": [1, 2, {"z": None, "y": [True, False]}], "w": {}},
        ["quote \" and backslash \\ and both \\\"", "tab\tnewline\nnul\u0000del\u007f"],
        {"\u00e9": "caf\u00e9", "\u4e2d\u6587": "\U0001f600", "e": "\u2028\u2029\ufeff"},
        {"\u00e9": 1, "e": 2, "z": 3, "\U0001f600": 4, "\uffff": 5, "\u0100": 6},
        {"big": 2**64 + 1, "neg": -(2**70), "max": 18446744073709551615, "small": 7},
        [[[[[[["deep"]]]]]]],
        {"unicode escapes stay raw": "\\u00e9 is not \u00e9"},
        {"keys": {"3": 0, "10": 1, "2": 2}},
    ]
    objs.append(json.loads(tuf_messages()[1]))
    objs.append(json.loads(tuf_messages()[0]))
    cases = []
    for o in objs:
        cases.append({"obj": o, "canonical": encode_canonical(o).encode("utf-8").hex()})
    # Metadata as python-tuf writes it to disk: json.dumps with the default
    # ensure_ascii, so every non-ASCII character is a \\u escape and every
    # non-BMP character a surrogate pair. The device parses this text with
    # its own json and must reach securesystemslib's canonical bytes.
    texts = []
    for o in [
        {"path": "fw/\U0001f600.bin", "\U0001f680key": "\u00e9\u4e2d\U00010348", "n": 1},
        {"\uffff": 1, "\U0001f600": 2, "\ud7ff": 3, "\ue000": 4, "z": 5},
        {"escapes": "\"\\/\b\f\n\r\t\u0000\u001f"},
        json.loads(tuf_messages()[1]),
    ]:
        text = json.dumps(o, indent=1, sort_keys=True)
        assert "\\u" in text or o.get("escapes")
        texts.append({"json": text, "canonical": encode_canonical(json.loads(text)).encode("utf-8").hex()})
    rejects = [
        {"name": "float", "json": "{\"a\": 1.5}"},
        {"name": "float in list", "json": "[1, 2.0]"},
        {"name": "exponent float", "json": "[1e3]"},
    ]
    return {"cases": cases, "texts": texts, "rejects": rejects}


# ---------------------------------------------------------------- sha512


def sha_msg(length: int, seed: int) -> bytes:
    # Same generator in the device test: byte i = (i * 131 + seed * 7 + (i >> 8)) & 0xFF
    return bytes(((i * 131 + seed * 7 + (i >> 8)) & 0xFF) for i in range(length))


def make_sha512() -> dict:
    lengths = [0, 1, 3, 55, 56, 63, 64, 111, 112, 113, 127, 128, 129, 239, 240, 255, 256, 257, 1000, 4096, 65536]
    cases = []
    for i, n in enumerate(lengths):
        cases.append({"length": n, "seed": i, "sha512": hashlib.sha512(sha_msg(n, i)).hexdigest()})
    known = [
        {"msg": b"abc".hex(), "sha512": hashlib.sha512(b"abc").hexdigest()},
        {"msg": b"".hex(), "sha512": hashlib.sha512(b"").hexdigest()},
        {
            "msg": b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu".hex(),
            "sha512": hashlib.sha512(
                b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
            ).hexdigest(),
        },
    ]
    return {"generated": cases, "known": known}


# ---------------------------------------------------------------- ed25519


def make_ed25519() -> dict:
    cases = []
    for i, (pk, m, s) in enumerate(RFC8032):
        key = {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": pk}}
        cases.append(case("rfc8032 vector %d" % (i + 1), key, bytes.fromhex(s), bytes.fromhex(m), "valid"))
    signers = [CryptoSigner.generate_ed25519() for _ in range(3)]
    msgs = [b"", b"hello medsentry"] + tuf_messages()
    for si, signer in enumerate(signers):
        key = signer.public_key.to_dict()
        for mi, msg in enumerate(msgs if si == 0 else msgs[:3]):
            sig = bytes.fromhex(signer.sign(msg).signature)
            cases.append(case("good key%d msg%d" % (si, mi), key, sig, msg, "valid"))
    signer = signers[0]
    key = signer.public_key.to_dict()
    msg = msgs[2]
    sig = bytes.fromhex(signer.sign(msg).signature)
    s_int = int.from_bytes(sig[32:], "little")
    pk_raw = bytes.fromhex(key["keyval"]["public"])

    def with_pub(public, keytype="ed25519", scheme="ed25519"):
        return {"keytype": keytype, "scheme": scheme, "keyval": {"public": public}}

    neg = [
        ("flipped bit in message", key, sig, flip(msg, 10, 3), "invalid"),
        ("flipped last bit of message", key, sig, flip(msg, len(msg) - 1, 0), "invalid"),
        ("flipped bit in R", key, flip(sig, 3, 1), msg, "invalid"),
        ("flipped bit in S", key, flip(sig, 40, 5), msg, "invalid"),
        ("wrong key", signers[1].public_key.to_dict(), sig, msg, "invalid"),
        ("S + L (S >= L)", key, sig[:32] + (s_int + ED_L).to_bytes(32, "little"), msg, "invalid"),
        ("S = L", key, sig[:32] + ED_L.to_bytes(32, "little"), msg, "invalid"),
        ("S all ones", key, sig[:32] + b"\xff" * 32, msg, "invalid"),
        ("signature 63 bytes", key, sig[:63], msg, "invalid"),
        ("signature 65 bytes", key, sig + b"\x00", msg, "invalid"),
        ("empty signature", key, b"", msg, "invalid"),
        ("all-zero signature", key, b"\x00" * 64, msg, "invalid"),
        ("R with y >= p (non-canonical)", key, (ED_P + 1).to_bytes(32, "little") + sig[32:], msg, "invalid"),
        ("public key 62 hex chars", with_pub(pk_raw[:31].hex()), sig, msg, "unsupported"),
        ("public key 66 hex chars", with_pub(pk_raw.hex() + "00"), sig, msg, "unsupported"),
        ("public key not hex", with_pub("zz" + pk_raw.hex()[2:]), sig, msg, "unsupported"),
        ("public key y >= p (non-canonical point)", with_pub((ED_P + 3).to_bytes(32, "little").hex()), sig, msg, "unsupported"),
        ("public key not on curve", with_pub((2).to_bytes(32, "little").hex()), sig, msg, "unsupported"),
        ("unknown scheme", with_pub(pk_raw.hex(), scheme="ed448"), sig, msg, "unsupported"),
        ("unknown keytype", with_pub(pk_raw.hex(), keytype="ed448"), sig, msg, "unsupported"),
    ]
    # Small-order public keys: OpenSSL accepts the identity key with a
    # "signature" R = [S]B for ANY message; the device refuses such keys.
    import sys

    sys.path.insert(0, str(OUT.parents[3]))
    from updater.crypto import ed25519 as dev_ed

    s_any = 123456789
    r_forged = dev_ed.encode_point(dev_ed.double_scalarmult(s_any, 0, (0, 1, 1, 0)))
    forged = r_forged + s_any.to_bytes(32, "little")
    identity = (1).to_bytes(32, "little").hex()
    neg.append(("small-order public key (identity), forged signature", with_pub(identity), forged, msg, "unsupported"))
    neg.append(("small-order public key (order 2)", with_pub((ED_P - 1).to_bytes(32, "little").hex()), sig, msg,
                "unsupported"))
    neg.append(("small-order public key (order 4)", with_pub(bytes(32).hex()), sig, msg, "unsupported"))
    neg.append(("small-order public key (order 8)",
                with_pub("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"), sig, msg, "unsupported"))
    # Cases where securesystemslib/OpenSSL and the strict RFC 8032 decoder
    # differ (OpenSSL reduces a non-canonical y): expectation is ours, noted.
    no_sslib = {"public key y >= p (non-canonical point)", "public key not on curve", "public key 62 hex chars",
                "small-order public key (identity), forged signature", "small-order public key (order 2)",
                "small-order public key (order 4)", "small-order public key (order 8)",
                "public key 66 hex chars", "public key not hex", "unknown scheme", "unknown keytype"}
    for name, k, sg, m, exp in neg:
        cases.append(case(name, k, sg, m, exp, check_sslib=name not in no_sslib))
    return {"cases": cases}


# ---------------------------------------------------------------- ecdsa


def make_ecdsa() -> dict:
    cases = []
    signers = [CryptoSigner.generate_ecdsa() for _ in range(3)]
    msgs = [b"", b"hello medsentry"] + tuf_messages()
    for si, signer in enumerate(signers):
        key = signer.public_key.to_dict()
        for mi, msg in enumerate(msgs if si == 0 else msgs[:3]):
            sig = bytes.fromhex(signer.sign(msg).signature)
            cases.append(case("good key%d msg%d" % (si, mi), key, sig, msg, "valid"))
    signer = signers[0]
    key = signer.public_key.to_dict()
    msg = msgs[2]
    sig = bytes.fromhex(signer.sign(msg).signature)
    r, s = decode_dss_signature(sig)
    n = P256_N
    pub = signer._private_key.public_key()  # noqa: SLF001
    nums = pub.public_numbers()

    def with_pub(public, keytype="ecdsa", scheme="ecdsa-sha2-nistp256"):
        return {"keytype": keytype, "scheme": scheme, "keyval": {"public": public}}

    # Same key as SPKI with a compressed point (OpenSSL loads it too).
    spki = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    comp = pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    alg = spki[2:2 + 2 + spki[3]]
    bits = b"\x03" + der_len(len(comp) + 1) + b"\x00" + comp
    comp_pem = der_to_pem(der_seq(alg + bits))
    # A point that is not on the curve: y + 1.
    bad_y = b"\x04" + nums.x.to_bytes(32, "big") + ((nums.y + 1) % (2**256)).to_bytes(32, "big")
    off_curve_pem = der_to_pem(der_seq(alg + b"\x03" + der_len(len(bad_y) + 1) + b"\x00" + bad_y))
    p384 = pem_of(ec.generate_private_key(ec.SECP384R1()).public_key())
    rsa_pem = pem_of(rsa.generate_private_key(65537, 2048).public_key())
    pem = key["keyval"]["public"]
    good_body = der_int(r) + der_int(s)

    # Public keys that are small multiples of G (private 1, 2, 3, n-1, n-3):
    # the joint-multiplication table then holds the point at infinity and
    # needs doublings inside additions, the special cases of the formulas.
    for d in (1, 2, 3, n - 1, n - 3):
        priv_d = ec.derive_private_key(d, ec.SECP256R1())
        kd = with_pub(pem_of(priv_d.public_key()))
        for j in range(3):
            m = b"edge %d" % j
            cases.append(case("private key %s msg%d" % (d if d < 10 else "n-%d" % (n - d), j), kd,
                              priv_d.sign(m, ec.ECDSA(hashes.SHA256())), m, "valid"))
    cases.append(case("legacy keytype ecdsa-sha2-nistp256", with_pub(pem, keytype="ecdsa-sha2-nistp256"), sig, msg, "valid"))
    cases.append(case("high-S twin (n - s) is valid ECDSA", key, encode_dss_signature(r, n - s), msg, "valid"))
    cases.append(case("compressed point SPKI", with_pub(comp_pem), sig, msg, "valid"))
    neg = [
        ("flipped bit in message", key, sig, flip(msg, 7, 2), "invalid"),
        ("flipped bit in signature r", key, encode_dss_signature(r ^ 1, s), msg, "invalid"),
        ("flipped bit in signature s", key, encode_dss_signature(r, s ^ (1 << 100)), msg, "invalid"),
        ("wrong key", signers[1].public_key.to_dict(), sig, msg, "invalid"),
        ("s = n", key, encode_dss_signature(r, n), msg, "invalid"),
        ("s + n (s >= n)", key, encode_dss_signature(r, s + n), msg, "invalid"),
        ("r + n (r >= n)", key, encode_dss_signature(r + n, s), msg, "invalid"),
        ("r = 0", key, encode_dss_signature(0, s), msg, "invalid"),
        ("s = 0", key, encode_dss_signature(r, 0), msg, "invalid"),
        ("r = n", key, encode_dss_signature(n, s), msg, "invalid"),
        ("DER truncated", key, sig[:-1], msg, "invalid"),
        ("DER trailing byte", key, sig + b"\x00", msg, "invalid"),
        ("DER empty", key, b"", msg, "invalid"),
        ("DER wrong outer tag", key, b"\x31" + sig[1:], msg, "invalid"),
        ("DER indefinite length", key, b"\x30\x80" + good_body + b"\x00\x00", msg, "invalid"),
        ("DER non-minimal long length", key, b"\x30\x81" + bytes([len(good_body)]) + good_body, msg, "invalid")
        if len(good_body) < 0x80 else None,
        ("DER INTEGER with extra leading zero", key,
         der_seq(b"\x02" + der_len(len(der_int(r)) - 1) + b"\x00" + der_int(r)[2:] + der_int(s)), msg, "invalid"),
        ("DER negative r", key, der_seq(b"\x02\x01\xff" + der_int(s)), msg, "invalid"),
        ("DER only one INTEGER", key, der_seq(der_int(r)), msg, "invalid"),
        ("raw r||s instead of DER", key, r.to_bytes(32, "big") + s.to_bytes(32, "big"), msg, "invalid"),
        ("truncated PEM", with_pub(pem[: len(pem) // 2]), sig, msg, "unsupported"),
        ("PEM without END line", with_pub(pem.replace("-----END PUBLIC KEY-----", "")), sig, msg, "unsupported"),
        ("PEM body not base64", with_pub(pem.replace(pem.splitlines()[1][:4], "!!!!", 1)), sig, msg, "unsupported"),
        ("point not on curve", with_pub(off_curve_pem), sig, msg, "unsupported"),
        ("P-384 key with nistp256 scheme", with_pub(p384), sig, msg, "unsupported"),
        ("RSA key with ecdsa scheme", with_pub(rsa_pem), sig, msg, "unsupported"),
        ("unsupported scheme ecdsa-sha2-nistp521 on P-256 key", with_pub(pem, scheme="ecdsa-sha2-nistp521"), sig, msg, "unsupported"),
        ("empty public", with_pub(""), sig, msg, "unsupported"),
    ]
    no_sslib = {"PEM body not base64", "PEM without END line", "unsupported scheme ecdsa-sha2-nistp521 on P-256 key",
                "truncated PEM", "point not on curve", "P-384 key with nistp256 scheme", "RSA key with ecdsa scheme",
                "empty public"}
    for item in neg:
        if item is None:
            continue
        name, k, sg, m, exp = item
        cases.append(case(name, k, sg, m, exp, check_sslib=name not in no_sslib))
    return {"cases": cases}


# ---------------------------------------------------------------- rsa


def make_rsa() -> dict:
    cases = []
    msgs = [b"", b"hello medsentry"] + tuf_messages()
    signers = [CryptoSigner.generate_rsa(size=2048), CryptoSigner.generate_rsa(size=3072)]
    for si, signer in enumerate(signers):
        key = signer.public_key.to_dict()
        for mi, msg in enumerate(msgs if si == 0 else msgs[:3]):
            sig = bytes.fromhex(signer.sign(msg).signature)
            cases.append(case("good %d-bit msg%d" % (2048 + 1024 * si, mi), key, sig, msg, "valid"))
    signer = signers[0]
    key = signer.public_key.to_dict()
    msg = msgs[2]
    sig = bytes.fromhex(signer.sign(msg).signature)
    priv = signer._private_key  # noqa: SLF001

    def pss(priv_key, m, salt):
        return priv_key.sign(m, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt), hashes.SHA256())

    def with_pub(public, keytype="rsa", scheme="rsassa-pss-sha256"):
        return {"keytype": keytype, "scheme": scheme, "keyval": {"public": public}}

    # Moduli whose bit length is 1 mod 8 (emLen = k - 1) and 7 mod 8.
    odd_keys = [rsa_key_exact_bits(2049), rsa_key_exact_bits(2055), rsa_key_exact_bits(2057), rsa.generate_private_key(3, 2048)]
    for ok in odd_keys:
        kd = with_pub(pem_of(ok.public_key()))
        assert ok.public_key().public_numbers().n.bit_length() == ok.key_size
        cases.append(case("%d-bit modulus e=%d" % (ok.key_size, ok.public_key().public_numbers().e), kd,
                          pss(ok, msg, 32), msg, "valid"))
    k4096 = rsa.generate_private_key(65537, 4096)
    cases.append(case("4096-bit modulus", with_pub(pem_of(k4096.public_key())), pss(k4096, msg, 32), msg, "valid"))
    cases.append(case("salt length 0", key, pss(priv, msg, 0), msg, "valid"))
    cases.append(case("salt length 20", key, pss(priv, msg, 20), msg, "valid"))
    cases.append(case("salt length max", key, pss(priv, msg, padding.PSS.MAX_LENGTH), msg, "valid"))

    n = priv.public_key().public_numbers().n
    pem = key["keyval"]["public"]
    k1024 = rsa.generate_private_key(65537, 1024)
    small = pem_of(k1024.public_key())
    ecpem = pem_of(ec.generate_private_key(ec.SECP256R1()).public_key())
    pkcs1 = priv.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    sha384_pss = priv.sign(msg, padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48), hashes.SHA384())
    neg = [
        ("flipped bit in message", key, sig, flip(msg, 5, 0), "invalid"),
        ("flipped bit in signature", key, flip(sig, 100, 4), msg, "invalid"),
        ("flipped last bit of signature", key, flip(sig, len(sig) - 1, 0), msg, "invalid"),
        ("wrong key", signers[1].public_key.to_dict(), sig, msg, "invalid"),
        ("signature = n", key, n.to_bytes(256, "big"), msg, "invalid"),
        ("signature all ones", key, b"\xff" * 256, msg, "invalid"),
        ("signature zero", key, b"\x00" * 256, msg, "invalid"),
        ("signature one", key, (1).to_bytes(256, "big"), msg, "invalid"),
        ("signature one byte short", key, sig[1:], msg, "invalid"),
        ("signature one byte long", key, b"\x00" + sig, msg, "invalid"),
        ("PKCS#1 v1.5 signature under PSS scheme", key, pkcs1, msg, "invalid"),
        ("PSS-SHA384 signature under sha256 scheme", key, sha384_pss, msg, "invalid"),
        ("1024-bit modulus", with_pub(small), pss(k1024, msg, 32), msg, "unsupported"),
        ("EC key with rsa scheme", with_pub(ecpem), sig, msg, "unsupported"),
        ("truncated PEM", with_pub(pem[:200] + "\n-----END PUBLIC KEY-----\n"), sig, msg, "unsupported"),
        ("unsupported scheme rsassa-pss-sha384", with_pub(pem, scheme="rsassa-pss-sha384"), sha384_pss, msg, "unsupported"),
        ("unsupported scheme rsa-pkcs1v15-sha256", with_pub(pem, scheme="rsa-pkcs1v15-sha256"), pkcs1, msg, "unsupported"),
        ("keytype ed25519 with rsa scheme", with_pub(pem, keytype="ed25519"), sig, msg, "unsupported"),
    ]
    # securesystemslib accepts 1024-bit keys and the sha384 / pkcs1v15
    # schemes; this client deliberately does not (policy, not a bug).
    no_sslib = {"1024-bit modulus", "EC key with rsa scheme", "truncated PEM", "unsupported scheme rsassa-pss-sha384",
                "unsupported scheme rsa-pkcs1v15-sha256", "keytype ed25519 with rsa scheme"}
    for name, k, sg, m, exp in neg:
        cases.append(case(name, k, sg, m, exp, check_sslib=name not in no_sslib))
    return {"cases": cases}


def write(name: str, data: dict) -> None:
    path = OUT / name
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print("wrote", path, path.stat().st_size, "bytes")


def write_lines(name: str, data: dict) -> None:
    """JSON Lines, one case per line: the device test reads one case at a
    time, so the 256 KiB heap never holds the whole table."""
    path = OUT / name
    with path.open("w", encoding="utf-8") as f:
        for c in data["cases"]:
            f.write(json.dumps(c, ensure_ascii=False, separators=(",", ":")) + "\n")
    print("wrote", path, path.stat().st_size, "bytes")


def main() -> None:
    write("canonjson.json", make_canonjson())
    write("sha512.json", make_sha512())
    write_lines("ed25519.jsonl", make_ed25519())
    write_lines("ecdsa.jsonl", make_ecdsa())
    write_lines("rsa.jsonl", make_rsa())


if __name__ == "__main__":
    main()
