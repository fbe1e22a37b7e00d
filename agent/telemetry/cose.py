# COSE_Encrypt0 (RFC 9052 section 5.2) with AES-CCM-16-64-128 (RFC 9053,
# COSE alg 10), exactly as host_tools/collector/SEALING.md specifies:
#
#   msg   = #6.16([ h'A1010A', {4: kid(8 bytes), 6: PIV}, ciphertext||tag ])
#   PIV   = sequence number, big-endian, leading zero bytes stripped (1..5 bytes)
#   nonce = base_iv XOR (zero bytes || PIV) left-padded to 13 bytes
#   aad   = CBOR(["Encrypt0", h'A1010A', external_aad = UTF-8 MQTT topic])
#
# Binding the topic (which names the device) in the AAD means a record moved
# to another device's topic or from telemetry to status fails authentication.
# open() is the strict parser: anything but the exact structure above raises
# CoseError; a failed tag raises CoseAuthError (a CoseError).
from agent.telemetry import cbor
from agent.telemetry.aes_ccm import AESCCM, CCMError, InvalidTag

ALG_AES_CCM_16_64_128 = 10
PROTECTED = b"\xa1\x01\x0a"  # {1: 10}
_PREFIX = b"\xd0\x83\x43" + PROTECTED  # tag 16, array(3), bstr(3) protected
KID_LEN = 8
KEY_LEN = 16
IV_LEN = 13
TAG_LEN = 8
MAX_PIV_LEN = 5
MAX_SEQ = (1 << 40) - 1
MAX_MESSAGE = 1024


class CoseError(ValueError):
    # Malformed / not-our-format message or bad key material.
    pass


class CoseAuthError(CoseError):
    # Structure fine but authentication failed (forged, wrong key or topic).
    pass


def piv_from_seq(seq):
    if not isinstance(seq, int) or seq < 1 or seq > MAX_SEQ:
        raise CoseError("sequence number out of range 1..2^40-1")
    # Minimal big-endian (int.bit_length is absent on MicroPython).
    n = 1
    while seq >> (8 * n):
        n += 1
    return seq.to_bytes(n, "big")


def seq_from_piv(piv):
    if not 1 <= len(piv) <= MAX_PIV_LEN or piv[0] == 0:
        raise CoseError("partial IV empty, too long or not minimal")
    return int.from_bytes(piv, "big")


def make_nonce(base_iv, piv):
    # base_iv XOR left-padded PIV, as one big-integer XOR.
    return (int.from_bytes(base_iv, "big") ^ int.from_bytes(piv, "big")).to_bytes(IV_LEN, "big")


def make_aad(topic):
    if isinstance(topic, str):
        topic = topic.encode("utf-8")
    return cbor.dumps(["Encrypt0", PROTECTED, bytes(topic)])


def _bstr_head(n):
    if n < 24:
        return bytes((0x40 | n,))
    if n < 0x100:
        return bytes((0x58, n))
    return bytes((0x59,)) + n.to_bytes(2, "big")


class Sealer:
    # One telemetry key: kid (8 bytes), AES-128 key, base IV (13 bytes).
    def __init__(self, kid, key, base_iv):
        if len(kid) != KID_LEN or len(key) != KEY_LEN or len(base_iv) != IV_LEN:
            raise CoseError("key material: kid 8, key 16, base_iv 13 bytes")
        self.kid = bytes(kid)
        self._base_iv = bytes(base_iv)
        self._ccm = AESCCM(bytes(key), TAG_LEN)
        # The device seals on two or three fixed topics: cache their AAD.
        self._aad = {}

    def _aad_for(self, topic):
        a = self._aad.get(topic)
        if a is None:
            if len(self._aad) >= 8:
                self._aad = {}
            a = self._aad[topic] = make_aad(topic)
        return a

    def seal(self, seq, plaintext, topic):
        piv = piv_from_seq(seq)
        try:
            ct = self._ccm.encrypt(make_nonce(self._base_iv, piv), plaintext, self._aad_for(topic))
        except CCMError as e:
            raise CoseError("cannot seal: %s" % e)
        # Built by hand in the canonical layout (unprotected: 4 then 6).
        msg = b"".join((_PREFIX, b"\xa2\x04", _bstr_head(KID_LEN), self.kid, b"\x06",
                        _bstr_head(len(piv)), piv, _bstr_head(len(ct)), ct))
        if len(msg) > MAX_MESSAGE:
            raise CoseError("sealed message above %d bytes" % MAX_MESSAGE)
        return msg

    def open(self, msg, topic):
        # Returns (seq, plaintext). Raises CoseError / CoseAuthError.
        kid, piv, ct = parse(msg)
        if kid != self.kid:
            raise CoseError("message sealed under another key id")
        try:
            pt = self._ccm.decrypt(make_nonce(self._base_iv, piv), ct, self._aad_for(topic))
        except InvalidTag:
            raise CoseAuthError("authentication failed")
        except CCMError as e:
            raise CoseError("cannot open: %s" % e)
        return seq_from_piv(piv), pt


def parse(msg):
    # Strict structure check without keys: returns (kid, piv, ciphertext).
    if not isinstance(msg, (bytes, bytearray, memoryview)):
        raise CoseError("message must be bytes")
    if len(msg) > MAX_MESSAGE:
        raise CoseError("message above %d bytes" % MAX_MESSAGE)
    try:
        obj = cbor.loads(msg, max_depth=4, max_items=16, max_len=MAX_MESSAGE)
    except cbor.CBORDecodeError as e:
        raise CoseError("not CBOR: %s" % e)
    if not isinstance(obj, cbor.Tag) or obj.tag != 16:
        raise CoseError("not a tagged COSE_Encrypt0 (tag 16)")
    arr = obj.value
    if not isinstance(arr, list) or len(arr) != 3:
        raise CoseError("COSE_Encrypt0 must be an array of 3")
    prot, unprot, ct = arr
    if prot != PROTECTED:
        raise CoseError("protected header must be {1: 10} (AES-CCM-16-64-128)")
    if not isinstance(unprot, dict) or len(unprot) != 2:
        raise CoseError("unprotected header must hold exactly kid and partial IV")
    kid = unprot.get(4)
    piv = unprot.get(6)
    if not isinstance(kid, bytes) or len(kid) != KID_LEN:
        raise CoseError("kid must be an 8-byte bstr")
    if not isinstance(piv, bytes):
        raise CoseError("partial IV must be a bstr")
    seq_from_piv(piv)
    if not isinstance(ct, bytes) or len(ct) < TAG_LEN:
        raise CoseError("ciphertext must be a bstr of at least the tag length")
    # Deterministic encoding only (shortest lengths, header order 4 then 6):
    # re-encoding must give back exactly the input.
    if cbor.dumps(obj) != bytes(msg):
        raise CoseError("non-canonical CBOR encoding")
    return kid, piv, ct
