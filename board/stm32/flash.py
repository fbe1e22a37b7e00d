# Flash of the STM32 board: the external SPI NOR (16 MiB, 4 KiB erase sectors)
# that the firmware presents as pyb.Flash (board/stm32/MEDSENTRY_F767ZI:
# MICROPY_HW_ENABLE_INTERNAL_FLASH_STORAGE 0, MICROPY_HW_BDEV_SPIFLASH_EXTENDED),
# split into the partitions of board/hal.py, each a littlefs2 volume.
#
# Why not the chip's own 2 MiB: its sectors are 32/128/256 KiB, and the stm32
# port's internal-flash block device erases a whole sector and rewrites it from
# a RAM cache after a delay; a power cut between the erase and the rewrite
# loses every file in that sector, which breaks littlefs's power-loss
# guarantees that the A/B updater relies on. The NOR's 4 KiB erase unit is the
# one littlefs is built for; the internal flash holds only the firmware.
#
# The partition table is the one the simulated board uses (board/sim/flash.py,
# block 0, "MSFLASH1"), so the host's image builder makes images for both.
# It is parsed here again rather than imported: the sim module carries the
# sim's power-cut machinery, which has no place on the board.
import struct
import hashlib

import pyb
import vfs

from board.hal import HALError

MAGIC = b"MSFLASH1"
VERSION = 1
HEADER_FMT = "<8sHHII"  # magic, version, count, block_size, total_blocks
ENTRY_FMT = "<12sII"  # name, first_block, nblocks
HEADER_SIZE = 20  # struct.calcsize(HEADER_FMT)
ENTRY_SIZE = 20  # struct.calcsize(ENTRY_FMT)
CHECK_SIZE = 16
MAX_ENTRIES = 16

# The NOR's erase sector (MP_SPIFLASH_ERASE_BLOCK_SIZE): pyb.Flash(start=, len=)
# on a board with MICROPY_HW_BDEV_SPIFLASH_EXTENDED takes start and len in bytes,
# multiples of it, and works in it once initialised for the extended protocol.
BLOCK_SIZE = 4096
IOCTL_INIT = 1

# littlefs geometry (mkfs and mount must agree; same as the sim's images).
LFS_READ = 64
LFS_PROG = 64
LFS_LOOKAHEAD = 32


class FlashError(HALError):
    # The flash is unusable (no table, corrupt table, unmountable partition).
    # Never answered by formatting: patient data and identity may be there.
    pass


def read_table():
    # Returns (block_size, total_blocks, [(name, first, nblocks)]).
    dev = pyb.Flash(start=0, len=BLOCK_SIZE)
    # INIT with arg 1: the extended protocol, in the NOR's native 4 KiB blocks
    # (ports/stm32/storage.c, pyb_flash_ioctl), as littlefs does on mount.
    dev.ioctl(IOCTL_INIT, 1)
    head = bytearray(BLOCK_SIZE)
    # pyb.Flash returns the driver's error code instead of raising.
    err = dev.readblocks(0, head, 0)
    if err:
        raise FlashError("SPI flash read failed (%d)" % err)
    if head[:8] != MAGIC:
        raise FlashError("no partition table on the SPI flash (bad magic)")
    _, version, count, block_size, total = struct.unpack(HEADER_FMT, head[:HEADER_SIZE])
    if version != VERSION:
        raise FlashError("partition table version %d not supported" % version)
    if block_size != BLOCK_SIZE:
        raise FlashError("partition table block size %d, the NOR erases %d" % (block_size, BLOCK_SIZE))
    if count > MAX_ENTRIES:
        raise FlashError("partition table corrupt (count %d)" % count)
    end = HEADER_SIZE + count * ENTRY_SIZE
    if hashlib.sha256(head[:end]).digest()[:CHECK_SIZE] != bytes(head[end:end + CHECK_SIZE]):
        raise FlashError("partition table corrupt (check mismatch)")
    parts = []
    off = HEADER_SIZE
    for _ in range(count):
        raw, first, n = struct.unpack(ENTRY_FMT, head[off:off + ENTRY_SIZE])
        off += ENTRY_SIZE
        name = bytes(raw).rstrip(b"\x00").decode()
        if first < 1 or n < 2 or first + n > total:
            raise FlashError("partition table corrupt (entry %s)" % name)
        parts.append((name, first, n))
    return block_size, total, parts


def partition(first, nblocks):
    # The block device of one partition: a window of the NOR, extended block
    # protocol (readblocks/writeblocks with offset, ioctl 6 erases 4 KiB).
    return pyb.Flash(start=first * BLOCK_SIZE, len=nblocks * BLOCK_SIZE)


def mount_all(names=None):
    # Mount each partition at /<name>. Returns {name: "/name"}.
    _, _, parts = read_table()
    mounts = {}
    for pname, first, n in parts:
        if names and pname not in names:
            continue
        try:
            # The stubs declare VfsLfs2 with AbstractBlockDev's abstract
            # methods; it is a concrete class (hence the ignore below).
            fs = vfs.VfsLfs2(partition(first, n), readsize=LFS_READ, progsize=LFS_PROG,  # type: ignore[abstract]
                             lookahead=LFS_LOOKAHEAD)
        except OSError as e:
            raise FlashError("partition %s is not a valid littlefs2 volume (%s); refusing to format it" % (pname, e))
        point = "/" + pname
        try:
            vfs.umount(point)
        except OSError:
            pass
        vfs.mount(fs, point)
        mounts[pname] = point
    return mounts
