# The partition table of a medsentry flash, shared by the simulated board
# (board/sim/flash.py, which also writes it) and the STM32 port
# (board/stm32/flash.py), so the host's image builder makes images for both.
#
# Block 0: header (magic, version, entry count, block size, total blocks),
# entries (name, first block, block count), then the first 16 bytes of the
# sha256 of header + entries.
import struct
import hashlib

MAGIC = b"MSFLASH1"
VERSION = 1
NAME_LEN = 12
HEADER_FMT = "<8sHHII"  # magic, version, count, block_size, total_blocks
ENTRY_FMT = "<12sII"  # name, first_block, nblocks
HEADER_SIZE = struct.calcsize(HEADER_FMT)
ENTRY_SIZE = struct.calcsize(ENTRY_FMT)
CHECK_SIZE = 16  # truncated sha256 over header + entries
MAX_ENTRIES = 16

# littlefs geometry used for every partition (mkfs and mount must agree).
LFS_READ = 64
LFS_PROG = 64
LFS_LOOKAHEAD = 32


class TableError(ValueError):
    # No table, or one that does not check out; each board raises its own
    # FlashError with this text.
    pass


def unpack_table(block):
    # Returns (block_size, total_blocks, [(name, first, nblocks)]).
    if len(block) < HEADER_SIZE or block[:8] != MAGIC:
        raise TableError("no partition table (bad magic): not a medsentry flash image")
    magic, version, count, block_size, total = struct.unpack(HEADER_FMT, block[:HEADER_SIZE])
    if version != VERSION:
        raise TableError("partition table version %d not supported" % version)
    if count > MAX_ENTRIES:
        raise TableError("partition table corrupt (count %d)" % count)
    end = HEADER_SIZE + count * ENTRY_SIZE
    if end + CHECK_SIZE > len(block):
        raise TableError("partition table corrupt (truncated)")
    if hashlib.sha256(block[:end]).digest()[:CHECK_SIZE] != bytes(block[end:end + CHECK_SIZE]):
        raise TableError("partition table corrupt (check mismatch)")
    parts = []
    off = HEADER_SIZE
    for _ in range(count):
        raw, first, n = struct.unpack(ENTRY_FMT, block[off:off + ENTRY_SIZE])
        off += ENTRY_SIZE
        name = bytes(raw).rstrip(b"\x00").decode()
        if first < 1 or n < 2 or first + n > total:
            raise TableError("partition table corrupt (entry %s)" % name)
        parts.append((name, first, n))
    return block_size, total, parts
