# agent/security/eventlog.py + logread.py: hash chain, rotation with an anchor, power cut
# at every write of a run of appends, tamper evidence on flash.
import os

import devtest
from agent.security import eventlog, logread
from agent.security.eventlog import FileIO
from agent.security.logread import LogError


def fill(log, n, start=0):
    heads = []
    for i in range(start, start + n):
        heads.append(log.append("update_step", "info", {"step": "s%d" % i, "i": i}, 1700000000 + i))
    return heads


def test_chain_reopens_and_verifies():
    d = devtest.tmpdir() + "/ev"
    log = logread.load(d)
    heads = fill(log, 10)
    n, e, h = heads[-1]
    assert n == 10 and h == logread.entry_hash(e)
    ent = logread.decode_entry(heads[3][1])
    assert ent[0] == 4 and ent[5] == heads[2][2] and ent[2] == "update_step"
    assert logread.decode_entry(heads[0][1])[5] == eventlog.ZERO
    first, hn, hh = logread.verify(d)
    assert (first, hn, hh) == (1, 10, h)
    again = logread.load(d)
    assert again.append("boot", "info", None, 5)[0] == 11
    assert logread.verify(d)[1] == 11


def test_rotation_keeps_a_chained_anchor():
    d = devtest.tmpdir() + "/ev"
    log = logread.load(d, seg_size=256, max_segs=3)
    heads = fill(log, 40)
    segs = [x for x in os.listdir(d) if x.endswith(".log")]
    assert len(segs) <= 3
    first, hn, hh = logread.verify(d)
    assert first > 1 and hn == 40 and hh == heads[-1][2]
    kept = list(logread.entries(logread.load(d, seg_size=256, max_segs=3)))
    assert kept[0][0] == first
    # The oldest kept entry chains onto the anchor = the last dropped entry.
    assert logread.decode_entry(kept[0][1])[5] == heads[first - 2][2]
    # Deleting the oldest kept segment is caught: the chain no longer meets the anchor.
    os.remove(d + "/" + sorted(segs)[0])
    devtest.raises(LogError, logread.verify, d)


class PowerCut(Exception):
    pass


class CuttingIO(FileIO):
    # Cuts power at flash write number `at` (counting appends, replaces and
    # removes); an append cut lands the first `part` bytes of its frame.
    def __init__(self, at, part):
        FileIO.__init__(self)
        self.at = at
        self.part = part
        self.count = 0

    def _tick(self):
        self.count += 1
        return self.count == self.at

    def append(self, path, data):
        if self._tick():
            if self.part:
                FileIO.append(self, path, data[:self.part])
            raise PowerCut()
        FileIO.append(self, path, data)

    def replace(self, path, data):
        if self._tick():
            if self.part:
                with open(path + ".tmp", "wb") as f:
                    f.write(data[:self.part])
            raise PowerCut()
        FileIO.replace(self, path, data)

    def remove(self, path):
        if self._tick():
            raise PowerCut()
        FileIO.remove(self, path)


def run_until_cut(d, io, total):
    done = []
    log = logread.load(d, seg_size=200, max_segs=2, io=io)
    try:
        for i in range(total):
            done.append(log.append("clock_jump", "warning", {"i": i}, 1000 + i)[2])
    except PowerCut:
        return done, True
    return done, False


def test_power_cut_at_every_write_of_a_run_of_appends():
    # Count the writes of a clean run (rotations included), then cut at each
    # one, whole or torn, and check what the next boot finds.
    base = devtest.tmpdir()
    io = CuttingIO(0, 0)
    run_until_cut(base + "/clean", io, 12)
    writes = io.count
    assert writes >= 12
    k = 0
    for at in range(1, writes + 1):
        for part in (0, 1, 7):
            k += 1
            d = "%s/c%d" % (base, k)
            done, cut = run_until_cut(d, CuttingIO(at, part), 12)
            assert cut
            first, hn, hh = logread.verify(d)
            # Every entry whose append returned is there; a torn one is not
            # (or, if its bytes all landed, it is complete and verifies).
            assert hn in (len(done), len(done) + 1), (at, part, hn, len(done))
            if hn == len(done) and done:
                assert hh == done[-1]
            # The log goes on after the cut, chained onto what survived.
            log = logread.load(d, seg_size=200, max_segs=2)
            log.append("boot", "info", None, 1)
            assert logread.verify(d)[1] == hn + 1


def test_any_flipped_byte_breaks_the_chain_or_the_head():
    d = devtest.tmpdir() + "/ev"
    log = logread.load(d)
    heads = fill(log, 4)
    head = heads[-1][2]
    path = d + "/" + [x for x in os.listdir(d) if x.endswith(".log")][0]
    with open(path, "rb") as f:
        raw = f.read()
    for i in range(len(raw)):
        b = bytearray(raw)
        b[i] ^= 0x01
        with open(path, "wb") as f:
            f.write(b)
        try:
            first, hn, hh = logread.verify(d)
            # Undetected locally only as a shorter or different head, which
            # the head in the posture report (and the host's copy) exposes.
            assert (hn, hh) != (4, head), i
        except LogError:
            pass
        for x in os.listdir(d):
            if x.endswith(".log") and d + "/" + x != path:
                os.remove(d + "/" + x)
    with open(path, "wb") as f:
        f.write(raw)
    assert logread.verify(d)[1:] == (4, head)


def test_detail_is_bounded():
    d = devtest.tmpdir() + "/ev"
    log = logread.load(d)
    detail = {}
    for i in range(20):
        detail["key%02d_very_long_name" % i] = "x" * 200
    n, e, h = log.append("command_refused", "warning", detail, 1)
    got = logread.decode_entry(e)[4]
    assert len(got) == eventlog.MAX_DETAIL_KEYS
    for k in got:
        assert len(k) <= eventlog.MAX_KEY and len(got[k]) <= eventlog.MAX_TEXT
    assert len(e) <= eventlog.MAX_ENTRY
