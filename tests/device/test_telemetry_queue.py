# Flash queue: order, bound, drop-oldest with a persisted count, survival
# across re-open (simulated reset), torn frame at the end of a segment.
import os

import devtest
from agent.telemetry.queue import FlashQueue, QueueError, MAX_RECORD


def rec(i, size=100):
    b = ("%06d" % i).encode()
    return b + bytes([i & 0xFF]) * (size - len(b))


def drain(q):
    out = []
    while True:
        p = q.peek()
        if p is None:
            return out
        out.append(p)
        q.ack()


def test_fifo_order_and_ack():
    q = FlashQueue(devtest.tmpdir() + "/q", capacity=16 * 1024, segment_size=4096)
    for i in range(100):
        q.append(rec(i))
    assert len(q) == 100
    got = drain(q)
    assert got == [rec(i) for i in range(100)]
    assert len(q) == 0 and q.peek() is None
    devtest.raises(QueueError, q.ack)


def test_cursor_reads_ahead_without_removing():
    q = FlashQueue(devtest.tmpdir() + "/q", capacity=16 * 1024, segment_size=4096)
    for i in range(60):
        q.append(rec(i))
    c = q.cursor()
    seen = []
    for _ in range(60):
        p, c = q.read(c)
        seen.append(p)
    assert seen == [rec(i) for i in range(60)]
    assert q.read(c)[0] is None
    assert len(q) == 60 and q.peek() == rec(0)


def test_survives_reopen_with_acks_persisted():
    d = devtest.tmpdir() + "/q"
    q = FlashQueue(d, capacity=16 * 1024, segment_size=4096, ack_sync_every=1)
    for i in range(90):
        q.append(rec(i))
    for _ in range(30):
        q.ack()
    q = FlashQueue(d, capacity=16 * 1024, segment_size=4096, ack_sync_every=1)
    assert len(q) == 60
    q.append(rec(90))
    assert drain(q) == [rec(i) for i in range(30, 91)]
    q = FlashQueue(d, capacity=16 * 1024, segment_size=4096)
    assert len(q) == 0 and q.peek() is None


def test_unsynced_acks_redeliver_never_lose():
    d = devtest.tmpdir() + "/q"
    q = FlashQueue(d, capacity=16 * 1024, segment_size=4096, ack_sync_every=8)
    for i in range(20):
        q.append(rec(i))
    for _ in range(11):
        q.ack()
    # "Power cut": no sync. At most 7 acked records come back; none is lost.
    q = FlashQueue(d, capacity=16 * 1024, segment_size=4096, ack_sync_every=8)
    got = drain(q)
    assert got[-9:] == [rec(i) for i in range(11, 20)]
    assert len(got) <= 9 + 7
    assert got == [rec(i) for i in range(20 - len(got), 20)]


def test_bound_and_drop_oldest_with_persisted_count():
    d = devtest.tmpdir() + "/q"
    q = FlashQueue(d, capacity=8192, segment_size=4096)
    for i in range(200):
        q.append(rec(i))
    total = 0
    for name in os.listdir(d):
        if name.endswith(".seg"):
            total += os.stat(d + "/" + name)[6]
    assert total <= 8192
    assert q.dropped > 0
    assert q.dropped + len(q) == 200
    kept = drain(q)
    # The newest records are kept, in order, contiguous.
    assert kept == [rec(i) for i in range(200 - len(kept), 200)]
    dropped = q.dropped
    q = FlashQueue(d, capacity=8192, segment_size=4096)
    assert q.dropped == dropped


def test_drop_counts_only_undelivered():
    d = devtest.tmpdir() + "/q"
    q = FlashQueue(d, capacity=8192, segment_size=4096, ack_sync_every=1)
    for i in range(36):  # 36 * 107 bytes: first segment holds 38 frames
        q.append(rec(i))
    for _ in range(10):
        q.ack()
    for i in range(36, 120):
        q.append(rec(i))
    assert q.dropped + len(q) == 110
    kept = drain(q)
    assert kept == [rec(i) for i in range(120 - len(kept), 120)]


def _tail_seg(d):
    segs = sorted(n for n in os.listdir(d) if n.endswith(".seg"))
    return d + "/" + segs[-1]


def test_torn_write_at_end_detected_and_skipped():
    d = devtest.tmpdir() + "/q"
    q = FlashQueue(d, capacity=16 * 1024, segment_size=4096)
    for i in range(10):
        q.append(rec(i))
    # Power cut in the middle of the 11th append: header + half a payload.
    frame_part = b"\xa5\x00\x64\x12\x34\x56\x78" + rec(10)[:40]
    with open(_tail_seg(d), "ab") as f:
        f.write(frame_part)
    q = FlashQueue(d, capacity=16 * 1024, segment_size=4096)
    assert len(q) == 10
    q.append(rec(11))
    q.append(rec(12))
    assert drain(q) == [rec(i) for i in range(10)] + [rec(11), rec(12)]
    q.sync()
    q = FlashQueue(d, capacity=16 * 1024, segment_size=4096)
    assert len(q) == 0


def test_torn_header_and_bad_crc_variants():
    for junk in (b"\xa5", b"\xa5\x00", b"\x00\x00\x00", b"\xa5\x00\x02\x00\x00\x00\x00xy", b"\xa5\xff\xff\x00\x00\x00\x00"):
        d = devtest.tmpdir() + "/q"
        q = FlashQueue(d, capacity=16 * 1024, segment_size=4096)
        for i in range(3):
            q.append(rec(i))
        with open(_tail_seg(d), "ab") as f:
            f.write(junk)
        q = FlashQueue(d, capacity=16 * 1024, segment_size=4096)
        assert len(q) == 3, junk
        q.append(rec(3))
        assert drain(q) == [rec(i) for i in range(4)], junk


def test_torn_index_copy_falls_back():
    d = devtest.tmpdir() + "/q"
    q = FlashQueue(d, capacity=16 * 1024, segment_size=4096, ack_sync_every=1)
    for i in range(10):
        q.append(rec(i))
    for _ in range(4):
        q.ack()
    # Corrupt the newest index copy: the older one is used (acks redelivered).
    newest = "index.a" if q._gen % 2 == 0 else "index.b"
    with open(d + "/" + newest, "w") as f:
        f.write("garbage")
    q = FlashQueue(d, capacity=16 * 1024, segment_size=4096)
    got = drain(q)
    assert got == [rec(i) for i in range(3, 10)]


def test_record_limits():
    q = FlashQueue(devtest.tmpdir() + "/q", capacity=16 * 1024, segment_size=4096)
    devtest.raises(QueueError, q.append, bytes(MAX_RECORD + 1))
    q.append(bytes(MAX_RECORD))
    q.append(b"")
    assert q.peek() == bytes(MAX_RECORD)
    q.ack()
    assert q.peek() == b""
    devtest.raises(QueueError, FlashQueue, devtest.tmpdir() + "/q", 4096, 4096)


def test_default_capacity_bounded_under_heap_cap():
    # 512 KiB of records through the default queue on a 256 KiB heap: never
    # holds more than one record in RAM.
    d = devtest.tmpdir() + "/q"
    q = FlashQueue(d)
    payload = bytes(1000)
    for i in range(600):
        q.append(payload)
    assert q.dropped > 0 and q.dropped + len(q) == 600
    q = FlashQueue(d)
    assert q.dropped + len(q) == 600
    n = 0
    while q.peek() is not None:
        q.ack()
        n += 1
    assert n == 600 - q.dropped
