# Secrets at rest: sealed under the board's device-unique key.
#
# The device private key and the telemetry AES key are never on flash in the
# clear. Provisioning hands them to code on the board, which seals them here
# before the first byte reaches flash; the agent unseals them in RAM at start.
# The sealing key is the HAL's device_key() (board/hal.py): on the sim board
# it lives in the OTP area outside the flash image, on hardware in eFuse /
# a hardware unique key / a secure element - so a flash dump alone reveals no
# key.
#
# Sealed blob: b"MSS1" | nonce (13 bytes, random) | AES-CCM ciphertext | tag (16 bytes)
# AAD = b"medsentry-seal:" + name, so a blob sealed as one secret (e.g. "tls-key")
# cannot be passed off as another ("telemetry-key").
import os

from agent.telemetry.aes_ccm import AESCCM, CCMError

MAGIC = b"MSS1"
NONCE_LEN = 13
TAG_LEN = 16
MAX_SECRET = 4096
AAD_PREFIX = b"medsentry-seal:"


class SealError(ValueError):
    # A sealed blob is malformed, or does not open under this board's key
    # (another board's flash, tampering, or a wrong name).
    pass


def _ccm(device_key):
    try:
        return AESCCM(bytes(device_key), TAG_LEN)
    except CCMError as e:
        raise SealError("bad device key: %s" % e)


def seal(device_key, name, secret, nonce=None):
    if not 0 < len(secret) <= MAX_SECRET:
        raise SealError("secret must be 1..%d bytes" % MAX_SECRET)
    if nonce is None:
        nonce = os.urandom(NONCE_LEN)
    if len(nonce) != NONCE_LEN:
        raise SealError("nonce must be %d bytes" % NONCE_LEN)
    ct = _ccm(device_key).encrypt(nonce, bytes(secret), AAD_PREFIX + name.encode())
    return MAGIC + bytes(nonce) + ct


def unseal(device_key, name, blob):
    blob = bytes(blob)
    if len(blob) < len(MAGIC) + NONCE_LEN + TAG_LEN + 1 or blob[:4] != MAGIC:
        raise SealError("%s is not a sealed secret" % name)
    if len(blob) > len(MAGIC) + NONCE_LEN + TAG_LEN + MAX_SECRET:
        raise SealError("%s: sealed secret too large" % name)
    nonce = blob[4:4 + NONCE_LEN]
    try:
        return _ccm(device_key).decrypt(nonce, blob[4 + NONCE_LEN:], AAD_PREFIX + name.encode())
    except CCMError:
        raise SealError("%s does not open under this board's device key" % name)
