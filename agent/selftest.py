# Power-on self-test of the agent: the checks a trial boot must pass before
# the new firmware confirms itself. Each returns None when fine or a reason.
import hashlib
import binascii

# SHA-256("abc"), FIPS 180-2 appendix B.1
_SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
# AES-128 FIPS-197 appendix C.1
_AES_KEY = binascii.unhexlify("000102030405060708090a0b0c0d0e0f")
_AES_PT = binascii.unhexlify("00112233445566778899aabbccddeeff")
_AES_CT = "69c4e0d86a7b0430d8cdb78070b4c55a"


def check_sha256():
    if binascii.hexlify(hashlib.sha256(b"abc").digest()).decode() != _SHA256_ABC:
        return "sha256 known-answer test failed"
    return None


def check_aes():
    try:
        from cryptolib import aes
    except ImportError:
        try:
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        except ImportError:
            return "no AES implementation"
        enc = Cipher(algorithms.AES(_AES_KEY), modes.ECB()).encryptor()
        out = enc.update(_AES_PT) + enc.finalize()
    else:
        out = aes(_AES_KEY, 1).encrypt(_AES_PT)
    if binascii.hexlify(out).decode() != _AES_CT:
        return "AES known-answer test failed"
    return None


def check_flash(mounts):
    # The state and data areas accept a write and read it back.
    import os

    for area in ("state", "data"):
        path = mounts[area] + "/.selftest"
        try:
            with open(path, "wb") as f:
                f.write(b"ok")
            with open(path, "rb") as f:
                ok = f.read() == b"ok"
            os.remove(path)
        except OSError as e:
            return "flash area %s not writable (%s)" % (area, e)
        if not ok:
            return "flash area %s read back wrong data" % area
    return None


def check_sensors(board):
    v = board.read_vitals()
    if not (20 <= v.get("hr", 0) <= 250 and 50 <= v.get("spo2", 0) <= 100):
        return "implausible vitals %r" % (v,)
    p = board.read_pump()
    if p.get("state") not in ("idle", "infusing", "alarm"):
        return "unknown pump state %r" % (p.get("state"),)
    return None


def run(board):
    # All checks; returns None or the first failure.
    for fn in (check_sha256, check_aes):
        r = fn()
        if r:
            return r
    r = check_flash(board.mounts())
    if r:
        return r
    return check_sensors(board)
