# Sequence numbers: strictly increasing, never reused across simulated
# restarts (re-open from the same directory), torn/corrupt state handling.
import devtest
from agent.telemetry.seqstore import SeqStore, SeqStoreError, SeqExhausted, MAX_SEQ


def test_fresh_store_starts_at_one_and_increases():
    d = devtest.tmpdir()
    s = SeqStore(d, block=8)
    got = [s.next() for _ in range(20)]
    assert got == list(range(1, 21))


def test_never_reuses_across_restarts():
    d = devtest.tmpdir()
    used = []
    s = SeqStore(d, block=16)
    for restart in range(12):
        # Use a varying number of numbers before each "power cut".
        for _ in range((restart * 7) % 23):
            used.append(s.next())
        s = SeqStore(d, block=16)
    used.append(s.next())
    for i in range(1, len(used)):
        assert used[i] > used[i - 1], "not strictly increasing at %d: %r" % (i, used[i - 1:i + 1])
    assert len(set(used)) == len(used)


def test_restart_jumps_to_ceiling_and_reports_previous_reservation():
    d = devtest.tmpdir()
    s = SeqStore(d, block=64)
    for _ in range(10):
        s.next()
    assert s.ceiling == 65
    s2 = SeqStore(d, block=64)
    assert s2.reserved_from == 65
    assert s2.prev_reservation_start == 1
    assert s2.next() == 65
    assert s2.ceiling == 129
    # A restart with nothing used keeps the same ceiling (no new reservation).
    s3 = SeqStore(d, block=64)
    s4 = SeqStore(d, block=64)
    assert s4.next() == 129


def test_persisted_before_handed_out():
    # The number handed out is always below the ceiling already on flash.
    d = devtest.tmpdir()
    s = SeqStore(d, block=4)
    for _ in range(30):
        n = s.next()
        on_flash = SeqStore(d, block=4).ceiling
        assert n < on_flash


def test_one_torn_copy_is_survived():
    d = devtest.tmpdir()
    s = SeqStore(d, block=8)
    for _ in range(20):
        s.next()
    c = s.ceiling
    with open(d + "/seq.a", "w") as f:
        f.write("99999 deadbeef\n")  # bad CRC
    s2 = SeqStore(d, block=8)
    assert s2.next() == c
    with open(d + "/seq.b", "w") as f:
        f.write("12")  # torn
    s3 = SeqStore(d, block=8)
    assert s3.next() >= c


def test_both_copies_corrupt_refuses():
    d = devtest.tmpdir()
    s = SeqStore(d, block=8)
    s.next()
    for name in ("seq.a", "seq.b"):
        with open(d + "/" + name, "w") as f:
            f.write("garbage")
    devtest.raises(SeqStoreError, SeqStore, d)


def test_exhaustion_raises_instead_of_wrapping():
    d = devtest.tmpdir()
    s = SeqStore(d, block=4)
    s.next()
    # Simulate a store near the end of the 40-bit space.
    from agent.telemetry import seqstore
    from board.compat import write_atomic
    for name in ("seq.a", "seq.b"):
        write_atomic(d + "/" + name, seqstore._encode(MAX_SEQ - 1, MAX_SEQ - 2))
    s = SeqStore(d, block=4)
    assert s.next() == MAX_SEQ - 1
    assert s.next() == MAX_SEQ
    devtest.raises(SeqExhausted, s.next)
