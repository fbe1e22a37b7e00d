# Strictly increasing sequence numbers that survive reboots and power cuts.
#
# The sequence number is the COSE partial IV: reusing one under the same key
# reuses an AES-CCM nonce, which breaks confidentiality and integrity. So the
# store never hands out a number unless a persisted "ceiling" above it is
# already on flash:
#
#   - the file holds a ceiling C; every number handed out is < C;
#   - when the next number reaches C, the store first persists C + block
#     (atomically: temp file + rename, two copies), then hands it out;
#   - after a reboot or power cut, counting restarts AT the persisted ceiling,
#     so at most `block - 1` numbers are skipped (never reused).
#
# The file also keeps the first number of the reservation that set the
# ceiling (prev_reservation_start after a reboot), so the sender can declare
# the reserved-but-unused numbers with "skip" (SEALING.md section 5) and the
# collector can tell that jump apart from lost records.
#
# Two copies (A and B) each carry a CRC-32; on open the larger valid ceiling
# wins. If neither copy is valid but one exists, the store refuses to run
# (SeqStoreError) instead of restarting from zero.
#
# Key rotation: the counter is per device, not per key. A new key + kid keeps
# counting from where the old one stopped: the (key, nonce) pair stays unique
# trivially, and the collector's replay window never has to reset. The partial
# IV is limited to 40 bits (5 bytes, as in OSCORE); at 1 Hz that lasts for
# ~34,000 years, and SeqExhausted is raised rather than wrapping.
import binascii

from board.compat import write_atomic

DEFAULT_BLOCK = 64
MAX_SEQ = (1 << 40) - 1


class SeqStoreError(ValueError):
    # Persisted state missing/corrupt in a way that could lead to nonce reuse.
    pass


class SeqExhausted(SeqStoreError):
    pass


def _encode(ceiling, start):
    # start = first number of the reservation that set this ceiling.
    body = "%d,%d" % (ceiling, start)
    return "%s %08x\n" % (body, binascii.crc32(body.encode()) & 0xFFFFFFFF)


def _decode(text):
    # Returns (ceiling, start), or None if the copy is torn/corrupt.
    try:
        body, crc = text.strip().split(" ")
        if int(crc, 16) != binascii.crc32(body.encode()) & 0xFFFFFFFF:
            return None
        c, s = body.split(",")
        value, start = int(c), int(s)
    except (ValueError, TypeError):
        return None
    if value < 1 or value > MAX_SEQ + 1 or not 1 <= start <= value:
        return None
    return value, start


class SeqStore:
    def __init__(self, directory, block=DEFAULT_BLOCK, name="seq"):
        if block < 1:
            raise ValueError("block must be >= 1")
        self._block = block
        self._paths = (directory + "/" + name + ".a", directory + "/" + name + ".b")
        best = None
        seen = 0
        for p in self._paths:
            try:
                with open(p) as f:
                    text = f.read(64)
            except OSError:
                continue
            seen += 1
            v = _decode(text)
            if v is not None and (best is None or v[0] > best[0]):
                best = v
        if best is None and seen:
            raise SeqStoreError("sequence state present but unreadable: refusing to risk nonce reuse")
        if best is None:
            best = (1, 1)  # fresh device: 0 is never used (SEALING.md 2)
        self._ceiling = best[0]
        # Numbers [prev_reservation_start, ceiling) may have been used before
        # this boot; the ones that were not are the "skip" range to declare.
        self.prev_reservation_start = best[1]
        # First number of this boot: the persisted ceiling.
        self._next = self._ceiling
        self.reserved_from = self._next

    @property
    def ceiling(self):
        return self._ceiling

    def peek(self):
        # Number the next call to next() will return.
        return self._next

    def _persist(self, ceiling, start):
        data = _encode(ceiling, start)
        # Write both copies; a power cut during either leaves the other intact
        # (and each write is itself temp + rename).
        for p in self._paths:
            write_atomic(p, data)
        self._ceiling = ceiling

    def next(self):
        n = self._next
        if n > MAX_SEQ:
            raise SeqExhausted("sequence numbers exhausted")
        if n >= self._ceiling:
            self._persist(min(n + self._block, MAX_SEQ + 1), n)
        self._next = n + 1
        return n
