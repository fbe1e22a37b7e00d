# Store-and-forward queue on flash: bounded, ordered, survives reset and
# power loss, never holds more than one record in RAM.
#
# Layout in `directory`:
#   NNNNNNNN.seg   append-only segment files, at most `segment_size` bytes
#   index.a/.b     head position + drop counter (two CRC'd copies, each written
#                  atomically with temp + rename)
#
# Frame in a segment: 0xA5 | len (2 bytes BE) | crc32(payload) (4 bytes BE) | payload
# A power cut during an append leaves a torn frame at the end of the newest
# segment. On open every frame of the newest segment is checked; at the first
# bad one the segment is "sealed" (nothing more is appended to it) and new
# records go to a fresh segment. Readers treat a bad frame as the end of its
# segment and continue with the next one. (MicroPython has no truncate(), so
# the torn bytes simply stay as dead space until the segment is deleted.)
#
# Bound: at most capacity // segment_size segments. When a new segment is
# needed and the bound is reached, the OLDEST segment is dropped as a whole
# and the number of undelivered records in it is added to `dropped`
# (persisted). Dropping by segment keeps the work per append O(1); with the
# defaults (512 KiB, 16 KiB segments) one drop loses ~3% of the queue.
#
# Acknowledgements move the head; the head is persisted every
# `ack_sync_every` acks and whenever a segment is finished. After a power cut
# up to ack_sync_every - 1 acknowledged records may be delivered again; the
# collector de-duplicates by sequence number as it does for QoS 1 redelivery.
import binascii
import os

from board.compat import const, write_atomic

DEFAULT_CAPACITY = 512 * 1024
DEFAULT_SEGMENT = 16 * 1024
MAX_RECORD = const(2048)
_MAGIC = const(0xA5)
_HDR = const(7)


class QueueError(ValueError):
    # Bad argument (oversize record) or unusable persisted state.
    pass


def _seg_name(n):
    return "%08d.seg" % n


def _crc(data):
    return binascii.crc32(data) & 0xFFFFFFFF


def _hdr(payload):
    return bytes((_MAGIC,)) + len(payload).to_bytes(2, "big") + _crc(payload).to_bytes(4, "big")


class FlashQueue:
    def __init__(self, directory, capacity=DEFAULT_CAPACITY, segment_size=DEFAULT_SEGMENT, ack_sync_every=8):
        if segment_size < _HDR + MAX_RECORD:
            raise QueueError("segment_size too small for the largest record")
        if capacity // segment_size < 2:
            raise QueueError("capacity must hold at least two segments")
        self._dir = directory
        self._seg_size = segment_size
        self._max_segs = capacity // segment_size
        self._sync_every = max(1, ack_sync_every)
        self._unsynced = 0
        self._hdrbuf = bytearray(_HDR)
        try:
            os.mkdir(directory)
        except OSError:
            pass
        self._load_index()
        self._scan()

    # ------------------------------------------------------------ state

    def _index_paths(self):
        return (self._dir + "/index.a", self._dir + "/index.b")

    def _load_index(self):
        best = None
        for p in self._index_paths():
            try:
                with open(p) as f:
                    text = f.read(128)
                body, crc = text.strip().split(" ")
                if int(crc, 16) != _crc(body.encode()):
                    continue
                gen, seg, off, dropped = [int(x) for x in body.split(",")]
            except (OSError, ValueError):
                continue
            if best is None or gen > best[0]:
                best = (gen, seg, off, dropped)
        if best is None:
            best = (0, 0, 0, 0)
        self._gen, self._head_seg, self._head_off, self.dropped = best

    def _save_index(self):
        self._gen += 1
        body = "%d,%d,%d,%d" % (self._gen, self._head_seg, self._head_off, self.dropped)
        data = "%s %08x\n" % (body, _crc(body.encode()))
        # Alternate copies: a torn write can only hit the older one.
        write_atomic(self._index_paths()[self._gen & 1], data)
        self._unsynced = 0

    def _segments(self):
        segs = []
        for name in os.listdir(self._dir):
            if name.endswith(".seg") and len(name) == 12:
                try:
                    segs.append(int(name[:8]))
                except ValueError:
                    pass
        segs.sort()
        return segs

    def _path(self, seg):
        return self._dir + "/" + _seg_name(seg)

    def _read_frame(self, f, off, want_payload):
        # Returns (payload or True, next_off) for a valid frame at off, or
        # (None, off) at the end of valid data. Reads one record at most.
        f.seek(off)
        n = f.readinto(self._hdrbuf)
        if not n:
            return None, off
        h = self._hdrbuf
        if n < _HDR or h[0] != _MAGIC:
            return None, off
        ln = (h[1] << 8) | h[2]
        if ln > MAX_RECORD:
            return None, off
        payload = f.read(ln)
        if payload is None or len(payload) != ln:
            return None, off
        if _crc(payload) != int.from_bytes(bytes(h[3:7]), "big"):
            return None, off
        return (payload if want_payload else True), off + _HDR + ln

    def _count_from(self, seg, off):
        # Number of valid frames in seg from off, and the end of valid data.
        count = 0
        try:
            f = open(self._path(seg), "rb")
        except OSError:
            return 0, off
        try:
            while True:
                ok, nxt = self._read_frame(f, off, False)
                if ok is None:
                    return count, off
                count += 1
                off = nxt
        finally:
            f.close()

    def _valid_at(self, seg, off):
        # True if a valid frame starts at off in seg (reads one header+record).
        try:
            f = open(self._path(seg), "rb")
        except OSError:
            return False
        try:
            ok, _ = self._read_frame(f, off, False)
        finally:
            f.close()
        return ok is not None

    def _file_size(self, seg):
        try:
            return os.stat(self._path(seg))[6]
        except OSError:
            return 0

    def _scan(self):
        segs = self._segments()
        # Remove segments that the index says are fully consumed/dropped.
        for s in segs:
            if s < self._head_seg:
                self._remove(s)
        segs = [s for s in segs if s >= self._head_seg]
        if not segs:
            self._head_seg = self._head_seg if self._head_seg else 1
            self._head_off = 0
            self._segs = [self._head_seg]
            self._tail_off = 0
            self._tail_sealed = False
            self._count = 0
            return
        if segs[0] != self._head_seg:
            # The head segment file is gone. We always save the index before
            # deleting a segment, so only an outside deletion gets here:
            # continue at the oldest segment that exists.
            self._head_seg = segs[0]
            self._head_off = 0
        self._segs = segs
        count = 0
        for s in segs:
            start = self._head_off if s == self._head_seg else 0
            c, end = self._count_from(s, start)
            count += c
        self._count = count
        tail = segs[-1]
        # `end` is the valid end of the tail segment; anything after it is torn.
        self._tail_off = end
        self._tail_sealed = end != self._file_size(tail)

    def _remove(self, seg):
        try:
            os.remove(self._path(seg))
        except OSError:
            pass

    # ------------------------------------------------------------ API

    def __len__(self):
        return self._count

    def append(self, payload):
        if len(payload) > MAX_RECORD:
            raise QueueError("record larger than %d bytes" % MAX_RECORD)
        need = _HDR + len(payload)
        if self._tail_sealed or self._tail_off + need > self._seg_size:
            self._new_segment()
        f = open(self._path(self._segs[-1]), "ab")
        try:
            # One write per frame, then close: the file system commits on close.
            f.write(_hdr(payload) + bytes(payload))
        finally:
            f.close()
        self._tail_off += need
        self._count += 1

    def _new_segment(self):
        if len(self._segs) >= self._max_segs:
            self._drop_oldest()
        nxt = self._segs[-1] + 1
        self._segs.append(nxt)
        self._tail_off = 0
        self._tail_sealed = False
        if self._head_seg < self._segs[0]:
            self._head_seg = self._segs[0]
            self._head_off = 0

    def _drop_oldest(self):
        old = self._segs[0]
        start = self._head_off if old == self._head_seg else 0
        lost, _ = self._count_from(old, start)
        self._segs.pop(0)
        self.dropped += lost
        self._count -= lost
        self._head_seg = self._segs[0]
        self._head_off = 0
        # Index first, then delete: a crash in between leaves a stale file
        # below the head, which _scan removes.
        self._save_index()
        self._remove(old)

    def cursor(self):
        # Position of the oldest undelivered record (for read()).
        return (self._head_seg, self._head_off)

    def read(self, cursor):
        # Returns (payload, next_cursor), or (None, cursor) when nothing is
        # left after cursor. Skips over the torn end of a segment.
        seg, off = cursor
        while True:
            if seg not in self._segs:
                # Cursor into a dropped segment: restart at the head.
                if seg < self._head_seg:
                    seg, off = self._head_seg, self._head_off
                    continue
                return None, cursor
            try:
                f = open(self._path(seg), "rb")
            except OSError:
                f = None
            if f is not None:
                try:
                    payload, nxt = self._read_frame(f, off, True)
                finally:
                    f.close()
                if payload is not None:
                    return payload, (seg, nxt)
            if seg == self._segs[-1]:
                return None, (seg, off)
            seg = self._segs[self._segs.index(seg) + 1]
            off = 0

    def last(self):
        # Newest undelivered record, or None (used once at boot to find the
        # last sequence number sealed before a reset). One record in RAM.
        for seg in reversed(self._segs):
            if seg < self._head_seg:
                break
            off = self._head_off if seg == self._head_seg else 0
            try:
                f = open(self._path(seg), "rb")
            except OSError:
                continue
            found = None
            try:
                while True:
                    payload, off = self._read_frame(f, off, True)
                    if payload is None:
                        break
                    found = payload
            finally:
                f.close()
            if found is not None:
                return found
        return None

    def peek(self):
        # Oldest undelivered record, or None.
        payload, _ = self.read(self.cursor())
        return payload

    def ack(self):
        # Remove the oldest record (after the broker acknowledged it).
        payload, nxt = self.read(self.cursor())
        if payload is None:
            raise QueueError("ack on an empty queue")
        seg, off = nxt
        self._count -= 1
        finished = []
        while seg != self._head_seg and self._segs and self._segs[0] < seg:
            finished.append(self._segs.pop(0))
            self._head_seg = self._segs[0] if self._segs else seg
        self._head_seg, self._head_off = seg, off
        # Move to the next segment right away when this one is fully consumed
        # and is not the one being appended to.
        if seg != self._segs[-1]:
            if not self._valid_at(seg, off):
                # Nothing valid after off in a non-tail segment: done with it.
                finished.append(self._segs.pop(0))
                self._head_seg, self._head_off = self._segs[0], 0
        self._unsynced += 1
        if finished or self._unsynced >= self._sync_every:
            self._save_index()
        for s in finished:
            self._remove(s)

    def sync(self):
        # Persist the head now (e.g. before a planned reset).
        if self._unsynced:
            self._save_index()
