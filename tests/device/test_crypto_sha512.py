# Pure SHA-512 (updater.crypto.sha512.sha512) against digests computed on the
# host with hashlib (golden file from make_vectors.py). The pure class is
# tested on BOTH runtimes, also on CPython where hashlib has sha512.
import binascii
import json

import devtest
from updater.crypto.sha512 import new_sha512, sha512


def _golden():
    with open(devtest.data_path("crypto/sha512.json")) as f:
        return json.load(f)


def _msg(length, seed):
    # Same generator as make_vectors.sha_msg.
    out = bytearray(length)
    for i in range(length):
        out[i] = (i * 131 + seed * 7 + (i >> 8)) & 0xFF
    return out


def test_known_answers():
    for c in _golden()["known"]:
        m = binascii.unhexlify(c["msg"])
        assert sha512(m).hexdigest() == c["sha512"]
        assert sha512(m).digest() == binascii.unhexlify(c["sha512"])


def test_generated_lengths_one_shot():
    for c in _golden()["generated"]:
        if c["length"] > 4096:
            continue
        assert sha512(_msg(c["length"], c["seed"])).hexdigest() == c["sha512"], c["length"]


def test_streaming_in_odd_chunks():
    # Chunk sizes that cross the 128-byte block and the 112-byte padding
    # boundary in every way, including empty updates and memoryviews.
    sizes = (1, 7, 0, 127, 128, 129, 111, 113, 500)
    for c in _golden()["generated"]:
        n = c["length"]
        if n > 4096:
            continue
        m = _msg(n, c["seed"])
        h = sha512()
        pos = 0
        i = 0
        while pos < n:
            step = sizes[i % len(sizes)]
            h.update(memoryview(m)[pos:pos + step])
            pos += step
            i += 1
        h.update(b"")
        assert h.hexdigest() == c["sha512"], n


def test_64k_streamed_by_blocks():
    c = [c for c in _golden()["generated"] if c["length"] == 65536][0]
    h = sha512()
    block = bytearray(1024)
    for start in range(0, 65536, 1024):
        for j in range(1024):
            i = start + j
            block[j] = (i * 131 + c["seed"] * 7 + (i >> 8)) & 0xFF
        h.update(block)
    assert h.hexdigest() == c["sha512"]


def test_digest_does_not_finalise_and_copy():
    h = sha512(b"ab")
    d1 = h.digest()
    assert h.digest() == d1
    h2 = h.copy()
    h.update(b"c")
    assert h.hexdigest() == _golden()["known"][0]["sha512"]  # sha512("abc")
    assert h2.digest() == d1
    assert sha512.digest_size == 64 and sha512.block_size == 128
    devtest.raises(TypeError, sha512, "str is not bytes")


def test_new_sha512_agrees():
    # Native hashlib.sha512 on CPython, the pure class on MicroPython.
    for c in _golden()["known"]:
        assert new_sha512(binascii.unhexlify(c["msg"])).hexdigest() == c["sha512"]
