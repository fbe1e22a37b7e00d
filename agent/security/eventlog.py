# Tamper-evident security event log on flash (issue 12 section 2).
#
# Layout in `directory` (on the data partition):
#   NNNNNNNN.log  append-only segments of at most `seg_size` bytes
#   anchor        CBOR [n, hash] of the newest entry that rotation dropped,
#                 written atomically (temp + rename) BEFORE its segment is
#                 deleted: the oldest kept entry chains onto it
# Frame in a segment:  length (2 bytes, big-endian) | entry
# Entry (deterministic CBOR array):
#   [n, t, kind, severity, detail, prev]
#   n        sequence number, 1, 2, 3, ... (never reused, also across resets)
#   t        board time (Unix seconds)
#   kind     event kind (listed in agent/security/events.py)
#   severity "info" | "warning" | "critical"
#   detail   small map text -> text/int (or null)
#   prev     sha256 of the previous entry's bytes (32 zero bytes for n = 1)
# hash(entry) = sha256(entry bytes); the head is (n, hash) of the newest one.
#
# Power safety: one append = one write of one frame at the end of the newest
# segment. A cut inside it leaves a torn frame at the end: on open the torn
# tail is ignored and the next append starts a fresh segment (MicroPython has
# no truncate()), so the log verifies up to the last complete entry. A cut in
# rotation leaves either the old anchor (segment still there) or the new
# anchor with a segment whose entries it covers (skipped, then deleted).
#
# Bounded: at most max_segs segments; RAM holds one small list per segment.
#
# Heap: this module is the resident append path only. Reading the log back
# (open and verify at boot: logread.load(), entries(), verify()) is in
# logread.py, imported on
# use; the monitor releases it after (agent.release_modules).
import hashlib
import os

from board.compat import const, write_atomic
from agent.telemetry import cbor

ZERO = b"\x00" * 32
MAX_ENTRY = const(768)
MAX_DETAIL_KEYS = const(8)
MAX_KEY = const(16)
MAX_TEXT = const(48)
ANCHOR = "anchor"


def clean_detail(detail):
    # A detail map bounded in keys and text so that an entry stays small.
    if detail is None:
        return None
    out = {}
    for k in sorted([k for k in detail if isinstance(k, str)])[:MAX_DETAIL_KEYS]:
        v = detail[k]
        if isinstance(v, bool):
            v = int(v)
        elif not isinstance(v, int) or v > 0xFFFFFFFFFFFF or v < -0xFFFFFFFFFFFF:
            v = str(v)[:MAX_TEXT]
        out[k[:MAX_KEY]] = v
    return out


def encode_entry(n, t, kind, severity, detail, prev):
    return cbor.dumps([n, t, kind, severity, clean_detail(detail), prev])


class FileIO:
    # Every flash write of the log goes through here (tests cut power at each).
    # The newest segment stays open; each append is written and flushed (on
    # littlefs a flush is a sync: the frame is committed when it returns).
    def __init__(self):
        self._path = None
        self._f = None

    def append(self, path, data):
        if self._path != path:
            self.close()
            self._f = open(path, "ab")
            self._path = path
        try:
            self._f.write(data)
            self._f.flush()
        except OSError:
            self.close()
            raise

    def close(self):
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
        self._f = None
        self._path = None

    def replace(self, path, data):
        write_atomic(path, data)

    def remove(self, path):
        if path == self._path:
            self.close()
        os.remove(path)


def seg_path(directory, k):
    return "%s/%08d.log" % (directory, k)


class EventLog:
    def __init__(self, directory, seg_size=2048, max_segs=4, io=None):
        self.dir = directory
        self.seg_size = seg_size
        self.max_segs = max_segs
        self.io = io or FileIO()
        try:
            os.mkdir(directory)
        except OSError:
            pass
        self.head_n = 0
        self.head_h = ZERO
        self.anchor = (0, ZERO)
        self.error = None  # first verification failure found on open
        self.torn = False
        self.segs = []  # [index, size, last_n, last_h] per kept segment
        # An empty log; logread.load() builds one from what is on flash.

    def append(self, kind, severity, detail, t):
        # -> (n, entry bytes, hash). OSError when the flash write failed
        # (the head does not move: the next append reuses the number).
        n = self.head_n + 1
        e = encode_entry(n, t, kind, severity, detail, self.head_h)
        if len(e) > MAX_ENTRY:
            e = encode_entry(n, t, kind, severity, {"cut": len(e)}, self.head_h)
        frame = bytes((len(e) >> 8, len(e) & 0xFF)) + e
        if not self.segs or self.torn or self.segs[-1][1] + len(frame) > self.seg_size:
            self._new_segment()
        seg = self.segs[-1]
        self.io.append(seg_path(self.dir, seg[0]), frame)
        h = hashlib.sha256(e).digest()  # hash(entry): logread.entry_hash
        seg[1] += len(frame)
        seg[2] = n
        seg[3] = h
        self.head_n = n
        self.head_h = h
        return n, e, h

    def _new_segment(self):
        while len(self.segs) >= self.max_segs:
            old = self.segs[0]
            if old[2] > self.anchor[0]:
                self.io.replace(self.dir + "/" + ANCHOR, cbor.dumps([old[2], old[3]]))
                self.anchor = (old[2], old[3])
            self.io.remove(seg_path(self.dir, old[0]))
            self.segs.pop(0)
        k = self.segs[-1][0] + 1 if self.segs else 1
        self.segs.append([k, 0, self.head_n, self.head_h])
        self.torn = False
