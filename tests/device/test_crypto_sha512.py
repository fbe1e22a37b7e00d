# Pure SHA-512 (updater.crypto.sha512.sha512) against digests computed on the
# host with hashlib (golden file from make_vectors.py). The pure class is
# tested on BOTH runtimes, also on CPython where hashlib has sha512.
import binascii
import json

import devtest
from updater.crypto import sha512 as sha512_mod
from updater.crypto.sha512 import new_sha512, sha512, sha512_viper


def _impls():
    # The pure class on every runtime, plus the viper class where the VM
    # has the native emitter (MicroPython; None on CPython).
    out = [sha512]
    if sha512_viper is not None:
        out.append(sha512_viper)
    if devtest.RUNTIME == "micropython":
        assert sha512_viper is not None, "the unix VM has viper: the fast path must load"
    return out


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
    for impl in _impls():
        for c in _golden()["known"]:
            m = binascii.unhexlify(c["msg"])
            assert impl(m).hexdigest() == c["sha512"]
            assert impl(m).digest() == binascii.unhexlify(c["sha512"])


def test_generated_lengths_one_shot():
    for impl in _impls():
        for c in _golden()["generated"]:
            if c["length"] > 4096:
                continue
            assert impl(_msg(c["length"], c["seed"])).hexdigest() == c["sha512"], c["length"]


def test_streaming_in_odd_chunks():
    # Chunk sizes that cross the 128-byte block and the 112-byte padding
    # boundary in every way, including empty updates and memoryviews.
    sizes = (1, 7, 0, 127, 128, 129, 111, 113, 500)
    for c in _golden()["generated"]:
        n = c["length"]
        if n > 4096:
            continue
        m = _msg(n, c["seed"])
        h = _impls()[-1]()
        pos = 0
        i = 0
        while pos < n:
            step = sizes[i % len(sizes)]
            h.update(memoryview(m)[pos:pos + step])
            pos += step
            i += 1
        h.update(b"")
        assert h.hexdigest() == c["sha512"], n


def test_streaming_in_odd_chunks_pure():
    # The pure class over the same cuts (shorter messages: it is slow).
    sizes = (1, 7, 0, 127, 128, 129, 111, 113, 500)
    for c in _golden()["generated"]:
        n = c["length"]
        if n > 1100:
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
        assert h.hexdigest() == c["sha512"], n


def test_64k_streamed_by_blocks():
    c = [c for c in _golden()["generated"] if c["length"] == 65536][0]
    for impl in _impls():
        h = impl()
        block = bytearray(1024)
        for start in range(0, 65536, 1024):
            for j in range(1024):
                i = start + j
                block[j] = (i * 131 + c["seed"] * 7 + (i >> 8)) & 0xFF
            h.update(block)
        assert h.hexdigest() == c["sha512"]


def test_digest_does_not_finalise_and_copy():
    for impl in _impls():
        h = impl(b"ab")
        d1 = h.digest()
        assert h.digest() == d1
        h2 = h.copy()
        h.update(b"c")
        assert h.hexdigest() == _golden()["known"][0]["sha512"]  # sha512("abc")
        assert h2.digest() == d1
        assert impl.digest_size == 64 and impl.block_size == 128
        devtest.raises(TypeError, impl, "str is not bytes")


def test_use_viper_switch():
    # use_viper(False) forces the pure fallback for new_sha512 on the VM;
    # answers are the same either way.
    try:
        assert sha512_mod.use_viper(False) is False
        for c in _golden()["known"]:
            h = new_sha512(binascii.unhexlify(c["msg"]))
            if devtest.RUNTIME == "micropython":
                assert isinstance(h, sha512)
            assert h.hexdigest() == c["sha512"]
    finally:
        on = sha512_mod.use_viper(True)
    assert on == (sha512_viper is not None)
    if sha512_viper is not None and devtest.RUNTIME == "micropython":
        assert isinstance(new_sha512(b""), sha512_viper)


def test_new_sha512_agrees():
    # Native hashlib.sha512 on CPython, the pure class on MicroPython.
    for c in _golden()["known"]:
        assert new_sha512(binascii.unhexlify(c["msg"])).hexdigest() == c["sha512"]


def test_random_lengths_across_blocks_agree():
    # Pseudo-random lengths around the 112/128-byte boundaries and random
    # split points: every available implementation (pure, viper) gives the
    # same digest as the reference of this runtime (hashlib.sha512 on
    # CPython, the pure class on MicroPython, itself checked against
    # hashlib's golden digests above).
    import random

    random.seed(512)
    impls = _impls()
    for n in range(120):
        length = random.choice((random.getrandbits(9), random.getrandbits(4) + 112, 128 * random.getrandbits(2) + random.getrandbits(3)))
        m = bytearray(length)
        for i in range(length):
            m[i] = random.getrandbits(8)
        ref = new_sha512(m).digest() if devtest.RUNTIME == "cpython" else sha512(m).digest()
        cut = random.getrandbits(9) % (length + 1)
        for impl in impls:
            h = impl()
            h.update(memoryview(m)[:cut])
            h.update(m[cut:])
            assert h.digest() == ref, (impl, length, cut)


def test_the_viper_kernel_is_compiled_once_per_boot():
    # The TUF client and the command verifier are unloaded after each use
    # (agent.release_modules); importing sha512 again must reuse the kernel
    # compiled at the first import (compiling needs 30-40 KiB of free heap
    # for a moment) and still hash right.
    if devtest.RUNTIME != "micropython":
        devtest.skip("viper exists only on MicroPython")
    import sys
    import updater
    from agent import release_modules

    first = updater._sha512_compress
    release_modules(["updater.crypto"])
    assert "updater.crypto.sha512" not in sys.modules
    from updater.crypto import sha512 as again

    try:
        assert again is not sha512_mod  # a fresh module ...
        assert again._compress_v is first  # ... with the kernel compiled before
        assert "updater.crypto.sha512_viper" not in sys.modules
        c = _golden()["known"][-1]
        assert again.sha512_viper(binascii.unhexlify(c["msg"])).hexdigest() == c["sha512"]
    finally:
        sys.modules["updater.crypto.sha512"] = sha512_mod
        sys.modules["updater.crypto"].sha512 = sha512_mod
