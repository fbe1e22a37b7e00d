# Flash of the simulated board: a fixed-size image file seen as NOR-like
# flash (4 KiB erase blocks), split into partitions by a table in block 0,
# each partition a littlefs2 volume.
#
# Image layout (default 2 MiB):
#   block 0        partition table (magic, geometry, entries, sha256 check)
#   loader         small boot loader (updater/loader.py as .mpy)
#   slot_a, slot_b application slots (A/B)
#   state          boot state, identity, counters, trusted TUF metadata
#   data           telemetry queue and other bulk data
#
# Power cut injection: every flash write operation (program or erase) is
# counted. When the count reaches the armed index, the operation does NOT
# happen: the VM kills itself with SIGKILL, exactly like losing power before
# that write reached the chip. Armed by MEDSENTRY_POWERCUT_AT (count from
# boot) or by the host writing a number into the arm file while running
# (count from when the board first sees it).
import os
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

IOCTL_INIT = 1
IOCTL_DEINIT = 2
IOCTL_SYNC = 3
IOCTL_BLOCK_COUNT = 4
IOCTL_BLOCK_SIZE = 5
IOCTL_BLOCK_ERASE = 6


class FlashError(OSError):
    # The flash image is unusable (corrupt table, unmountable partition,
    # wrong size). Never answered by formatting: the data may matter.
    pass


def default_layout(total_bytes, block_size=4096):
    # Partition sizes in blocks for a flash of total_bytes.
    total = total_bytes // block_size
    if total_bytes % block_size or total < 256:
        raise FlashError("flash size must be a multiple of %d and at least 1 MiB" % block_size)
    loader = 16  # 64 KiB
    state = 32  # 128 KiB
    slot = total // 4
    data = total - 1 - loader - state - 2 * slot
    return [("loader", loader), ("slot_a", slot), ("slot_b", slot), ("state", state), ("data", data)]


def pack_table(layout, block_size, total_blocks):
    # layout: [(name, nblocks)] in order; returns the table block bytes.
    if len(layout) > MAX_ENTRIES:
        raise FlashError("too many partitions")
    body = struct.pack(HEADER_FMT, MAGIC, VERSION, len(layout), block_size, total_blocks)
    first = 1
    for name, n in layout:
        nb = name.encode()
        if len(nb) > NAME_LEN:
            raise FlashError("partition name too long: %s" % name)
        body += struct.pack(ENTRY_FMT, nb + b"\x00" * (NAME_LEN - len(nb)), first, n)
        first += n
    if first > total_blocks:
        raise FlashError("partitions need %d blocks, flash has %d" % (first, total_blocks))
    body += hashlib.sha256(body).digest()[:CHECK_SIZE]
    return body + b"\xff" * (block_size - len(body))


def unpack_table(block):
    # Returns (block_size, total_blocks, [(name, first, nblocks)]).
    if len(block) < HEADER_SIZE or block[:8] != MAGIC:
        raise FlashError("no partition table (bad magic): not a medsentry flash image")
    magic, version, count, block_size, total = struct.unpack(HEADER_FMT, block[:HEADER_SIZE])
    if version != VERSION:
        raise FlashError("partition table version %d not supported" % version)
    if count > MAX_ENTRIES:
        raise FlashError("partition table corrupt (count %d)" % count)
    end = HEADER_SIZE + count * ENTRY_SIZE
    if end + CHECK_SIZE > len(block):
        raise FlashError("partition table corrupt (truncated)")
    if hashlib.sha256(block[:end]).digest()[:CHECK_SIZE] != bytes(block[end:end + CHECK_SIZE]):
        raise FlashError("partition table corrupt (check mismatch)")
    parts = []
    off = HEADER_SIZE
    for _ in range(count):
        raw, first, n = struct.unpack(ENTRY_FMT, block[off:off + ENTRY_SIZE])
        off += ENTRY_SIZE
        name = bytes(raw).rstrip(b"\x00").decode()
        if first < 1 or n < 2 or first + n > total:
            raise FlashError("partition table corrupt (entry %s)" % name)
        parts.append((name, first, n))
    return block_size, total, parts


class WriteCounter:
    # Shared by all partitions of one image: counts flash write operations
    # and performs the power cut when the armed index is reached.
    def __init__(self, cut_at=0, arm_path=None, hit_path=None):
        self.count = 0
        self.cut_at = cut_at  # absolute op index to cut at; 0 = not armed
        self.arm_path = arm_path
        self.hit_path = hit_path

    def _check_arm(self):
        # The host arms a cut on a running board by creating arm_path with a
        # relative index N: the Nth write from now is the one that never lands.
        # (It renames the file into place whole; a file read empty or unreadable
        # is left for the next write, not consumed: tests/device/test_board_flash.py.)
        try:
            with open(self.arm_path) as f:
                n = int(f.read().strip() or "0")
        except (OSError, ValueError):
            return
        if n <= 0:
            return
        try:
            os.remove(self.arm_path)
        except OSError:
            pass
        self.cut_at = self.count + n

    def before_write(self):
        if self.arm_path:
            self._check_arm()
        self.count += 1
        if self.cut_at and self.count >= self.cut_at:
            self.power_cut()

    def power_cut(self):
        # Record where the cut hit (host file, outside the flash), then die
        # without running one more line of Python.
        if self.hit_path:
            try:
                with open(self.hit_path, "w") as f:
                    f.write(str(self.count))
            except OSError:
                pass
        kill_self()


def kill_self():
    try:
        import sys

        if sys.implementation.name != "micropython":
            os.kill(os.getpid(), 9)
    except AttributeError:
        pass
    with open("/proc/self/stat") as f:
        pid = f.read().split()[0]
    os.system("kill -9 " + pid)
    # Not reached; if kill failed, stop anyway rather than write on.
    raise SystemExit(137)


class ImageFile:
    # The image file with block-granular access; one per board process.
    def __init__(self, path, counter=None):
        try:
            self.f = open(path, "r+b")
        except OSError:
            raise FlashError("flash image not found: %s" % path)
        self.f.seek(0, 2)
        self.size = self.f.tell()
        self.counter = counter or WriteCounter()
        head = bytearray(4096)
        self.f.seek(0)
        n = self.f.readinto(head)
        self.block_size, self.total_blocks, self.parts = unpack_table(head[:n])
        if self.size != self.block_size * self.total_blocks:
            raise FlashError(
                "flash image size %d does not match its table (%d blocks of %d)"
                % (self.size, self.total_blocks, self.block_size)
            )
        self._ff = b"\xff" * 256

    def partition(self, name):
        for pname, first, n in self.parts:
            if pname == name:
                return Partition(self, first, n)
        raise FlashError("no partition named %s" % name)

    def close(self):
        self.f.close()


class Partition:
    # A littlefs block device over a slice of the image (extended interface:
    # readblocks/writeblocks with byte offset, ioctl erase).
    def __init__(self, image, first, nblocks):
        self.image = image
        self.first = first
        self.nblocks = nblocks
        self.bs = image.block_size

    def _seek(self, block, offset):
        if block < 0 or block >= self.nblocks:
            raise OSError(5)  # EIO: outside the partition
        self.image.f.seek((self.first + block) * self.bs + offset)

    def readblocks(self, block, buf, offset=0):
        self._seek(block, offset)
        n = self.image.f.readinto(buf)
        if n != len(buf):
            raise OSError(5)

    def writeblocks(self, block, buf, offset=None):
        if offset is None:
            # Simple interface: erase then program whole blocks.
            for i in range(len(buf) // self.bs):
                self.ioctl(IOCTL_BLOCK_ERASE, block + i)
            offset = 0
        self.image.counter.before_write()
        self._seek(block, offset)
        self.image.f.write(buf)
        self.image.f.flush()

    def ioctl(self, op, arg):
        if op == IOCTL_BLOCK_COUNT:
            return self.nblocks
        if op == IOCTL_BLOCK_SIZE:
            return self.bs
        if op == IOCTL_BLOCK_ERASE:
            self.image.counter.before_write()
            self._seek(arg, 0)
            ff = self.image._ff
            for _ in range(self.bs // len(ff)):
                self.image.f.write(ff)
            self.image.f.flush()
            return 0
        if op in (IOCTL_INIT, IOCTL_DEINIT, IOCTL_SYNC):
            return 0
        return None


def mkfs(part):
    import vfs

    vfs.VfsLfs2.mkfs(part, readsize=LFS_READ, progsize=LFS_PROG, lookahead=LFS_LOOKAHEAD)


def open_fs(part, name):
    import vfs

    try:
        return vfs.VfsLfs2(part, readsize=LFS_READ, progsize=LFS_PROG, lookahead=LFS_LOOKAHEAD)
    except OSError as e:
        raise FlashError(
            "partition %s is not a valid littlefs2 volume (%s); refusing to format it" % (name, e)
        )


def mount_all(image, names=None):
    # Mount each partition at /<name>. Returns {name: "/name"}.
    import vfs

    mounts = {}
    for pname, first, n in image.parts:
        if names and pname not in names:
            continue
        fs = open_fs(Partition(image, first, n), pname)
        point = "/" + pname
        try:
            vfs.umount(point)
        except OSError:
            pass
        vfs.mount(fs, point)
        mounts[pname] = point
    return mounts
