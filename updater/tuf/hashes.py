# Length and hash checks of downloaded files against what metadata lists
# (streaming: nothing proportional to the file is held).
import binascii
import hashlib

from updater.crypto.sha512 import new_sha512 as _sha512
from updater.tuf.errors import LengthOrHashMismatchError

# Hash algorithms this client can compute. Others listed in metadata are
# ignored, but at least one of these must be present and all of these that
# are present must match (see HashCheck).
SUPPORTED_HASHES = ("sha256", "sha512")


def is_stream(data):
    return hasattr(data, "readinto")


def hex_of(b):
    return binascii.hexlify(b).decode()


def new_hasher(algo):
    """A hashlib-like object for a supported algorithm, else None."""
    if algo == "sha256":
        return hashlib.sha256()
    if algo == "sha512":
        return _sha512()
    return None


class HashCheck:
    """Streaming length + hash check against the values metadata lists.

    `update(chunk)` as data arrives, then `finish()` raises
    LengthOrHashMismatchError on any difference. `length` None means the
    metadata lists no length; `hashes` None/{} means it lists no hashes
    (allowed for MetaFile only, see require_hash)."""

    def __init__(self, length, hashes, require_hash):
        self.length = length
        self.count = 0
        self.hashers = []
        if hashes:
            for algo in hashes:
                h = new_hasher(algo)
                if h is not None:
                    self.hashers.append((algo, h, hashes[algo]))
            if not self.hashers:
                raise LengthOrHashMismatchError(
                    "no supported hash algorithm among %s" % ",".join(sorted(hashes))
                )
        elif require_hash:
            raise LengthOrHashMismatchError("no hashes listed")

    def update(self, chunk):
        self.count += len(chunk)
        if self.length is not None and self.count > self.length:
            raise LengthOrHashMismatchError(
                "more than the expected %d bytes" % self.length
            )
        for _a, h, _e in self.hashers:
            h.update(chunk)

    def finish(self):
        if self.length is not None and self.count != self.length:
            raise LengthOrHashMismatchError(
                "length %d, expected %d" % (self.count, self.length)
            )
        for algo, h, expected in self.hashers:
            got = hex_of(h.digest())
            if got != expected:
                raise LengthOrHashMismatchError(
                    "%s mismatch: got %s, expected %s" % (algo, got, expected)
                )


def feed(data, check):
    """Run a HashCheck over `data` (bytes, or a binary file object that is
    read through in 1 KiB pieces and rewound)."""
    if not is_stream(data):
        check.update(data)
        return
    buf = bytearray(1024)
    mv = memoryview(buf)
    while True:
        n = data.readinto(buf)
        if not n:
            break
        check.update(mv[:n])
    data.seek(0)
