# Runs a batch of differential crypto cases (JSON Lines written by
# tests/host/crypto_diff_cases.py) in ONE process of either runtime and prints
# one answer per case; the host compares them with cryptography's answers.
#   argv: cases.jsonl mode   (mode "viper" or "pure": SHA-512 compression)
# Device-subset code: runs on MicroPython and CPython.
import binascii
import gc
import json
import sys

from updater.crypto import sha512
from updater.crypto.verify import UnsupportedKeyError, verify_signature


def _answer(c):
    msg = binascii.unhexlify(c["msg"])
    if c["alg"] == "sha512":
        h = sha512.sha512()
        pos = 0
        for cut in c["cuts"] + [len(msg)]:
            h.update(memoryview(msg)[pos:cut])
            pos = cut
        return h.hexdigest()
    try:
        ok = verify_signature(c["key"], binascii.unhexlify(c["sig"]), msg)
    except UnsupportedKeyError:
        return "unsupported"
    return "valid" if ok else "invalid"


def main():
    sha512.use_viper(sys.argv[2] == "viper")
    print("@@backend " + sha512.backend())
    n = 0
    with open(sys.argv[1]) as f:
        for line in f:
            if line.strip():
                gc.collect()  # keeps the 256 KiB heap unfragmented for the long messages
                print("@@%d %s" % (n, _answer(json.loads(line))))
                n += 1
    print("@@done %d" % n)


main()
