# The one-time-programmable (OTP) "fuse" area of the simulated board.
#
# A real board keeps its console lock and its device-unique key in eFuses /
# OTP words that the ROM reads at power-on, that software can only program
# (bits go 0 -> 1, never back) and that no flash write or reflash touches.
# The sim board keeps them in one small file OUTSIDE the flash image, in the
# board directory (<board>/fuses/otp.bin, mode 0600, directory 0700), created
# by the host when the board is made (the "chip factory"):
#
#   byte 0        console lock word: 0 = open (factory), anything else = locked
#   bytes 1..15   reserved (0)
#   bytes 16..31  device-unique key (HUK): seals secrets on flash (agent/keystore.py)
#
# Reading fails closed: a missing, short or unreadable area is an UNKNOWN lock
# state, which every caller treats as locked. Programming only ORs bits in, so
# nothing here can open a locked console again.
import os

from board.hal import HALError

OTP_FILE = "otp.bin"
OTP_SIZE = 32
LOCK_BYTE = 0
KEY_OFFSET = 16
KEY_SIZE = 16

LOCKED = "locked"
OPEN = "open"
UNKNOWN = "unknown"


class FuseError(HALError):
    # The fuse area is missing or unreadable (the board must then fail closed).
    pass


def otp_path(fuse_dir):
    return fuse_dir + "/" + OTP_FILE


def read(fuse_dir):
    if not fuse_dir:
        raise FuseError("no fuse area")
    try:
        with open(otp_path(fuse_dir), "rb") as f:
            data = f.read(OTP_SIZE + 1)
    except OSError as e:
        raise FuseError("fuse area unreadable: %s" % e)
    if len(data) != OTP_SIZE:
        raise FuseError("fuse area has %d bytes, not %d" % (len(data), OTP_SIZE))
    return data


def lock_state(fuse_dir):
    # "locked", "open" or "unknown" (unknown is to be treated as locked).
    try:
        data = read(fuse_dir)
    except FuseError:
        return UNKNOWN
    return LOCKED if data[LOCK_BYTE] else OPEN


def device_key(fuse_dir):
    key = read(fuse_dir)[KEY_OFFSET:KEY_OFFSET + KEY_SIZE]
    if key == bytes(KEY_SIZE) or key == b"\xff" * KEY_SIZE:
        raise FuseError("device key not programmed")
    return key


def blow_lock(fuse_dir):
    # Program the lock word (OR: bits are only ever set). Written through a
    # temp file + rename on the host file system, so a power cut leaves
    # either the old or the new area, never a short one.
    data = bytearray(read(fuse_dir))
    if data[LOCK_BYTE]:
        return
    data[LOCK_BYTE] |= 0x01
    tmp = otp_path(fuse_dir) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, otp_path(fuse_dir))
    if lock_state(fuse_dir) != LOCKED:
        raise FuseError("lock fuse did not program")
