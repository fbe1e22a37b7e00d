# The one-time-programmable area of the STM32F767 and what this port keeps in it
# (RM0410, "One-time programmable bytes" and the embedded flash interface):
#
#   0x1FF0F000  1024 bytes of OTP data: 16 blocks of 64 bytes. Erased state is
#               0xFF; programming only clears bits (1 -> 0); no erase, no mass
#               erase and no reflash (not even RDP regression) touches it.
#   0x1FF0F400  16 lock bytes, one per block: writing 0x00 forbids any further
#               programming of that block.
#
# This port's layout:
#   block 0, word 0   console lock word: 0xFFFFFFFF = open (factory board);
#                     any programmed bit = locked. Programmed by lock_console().
#   block 1, 16 bytes device-unique key (HUK) sealing secrets on flash
#                     (agent/keystore.py); its lock byte is programmed right
#                     after the key, so the key can never be changed.
#
# What the chip lacks, said plainly: the F7 has no key store that software
# cannot read (no SAES/DHUK as on the STM32U5/H5, no KMU as on nRF53). The key
# in OTP is readable by any code the CPU runs, so its secrecy rests on (1) the
# console lock - a locked board runs only the frozen firmware and the signed
# application, no REPL - and (2) RDP level 2 in the option bytes, which disables
# the debug port and boot from RAM/system memory for good (set by the factory
# programmer, reported by rdp_level(); this port never sets it by itself).
# A design that must resist code execution on the MCU adds a secure element
# (e.g. ATECC608 on I2C) and seals through it instead of returning the key.
import stm

from board.hal import HALError

OTP_BASE = 0x1FF0F000
OTP_LOCK_BASE = 0x1FF0F400
OTP_BLOCK = 64
LOCK_WORD = OTP_BASE  # block 0, word 0
KEY_BLOCK = 1
KEY_ADDR = OTP_BASE + KEY_BLOCK * OTP_BLOCK
KEY_SIZE = 16

# Flash interface registers (RM0410 section 3.7).
FLASH_R = 0x40023C00
FLASH_KEYR = FLASH_R + 0x04
FLASH_SR = FLASH_R + 0x0C
FLASH_CR = FLASH_R + 0x10
FLASH_OPTCR = FLASH_R + 0x14
KEY1 = 0x45670123
KEY2 = 0xCDEF89AB
CR_PG = 1 << 0
CR_PSIZE_MASK = 3 << 8
CR_PSIZE_X8 = 0 << 8
CR_PSIZE_X32 = 2 << 8
CR_LOCK = 1 << 31
SR_BSY = 1 << 16
SR_ERRORS = 0xF2  # OPERR, WRPERR, PGAERR, PGPERR, ERSERR
BUSY_SPINS = 100000
# Cortex-M7 SCB: invalidate one L1 data-cache line by address (ARMv7-M ARM,
# DCIMVAC). The port runs with the D-cache on; a read right after programming
# could otherwise return the line cached before it (0xFF).
SCB_DCIMVAC = 0xE000EF5C
CACHE_LINE = 32

LOCKED = "locked"
OPEN = "open"
UNKNOWN = "unknown"


class OtpError(HALError):
    # The OTP area could not be read or programmed as asked.
    pass


def _invalidate(addr, n):
    a = addr & ~(CACHE_LINE - 1)
    while a < addr + n:
        stm.mem32[SCB_DCIMVAC] = a
        a += CACHE_LINE


def _read(addr, n):
    out = bytearray(n)
    for i in range(n):
        out[i] = stm.mem8[addr + i]
    return bytes(out)


def lock_state():
    w = stm.mem32[LOCK_WORD] & 0xFFFFFFFF
    if w == 0xFFFFFFFF:
        return OPEN
    return LOCKED


def device_key():
    key = _read(KEY_ADDR, KEY_SIZE)
    if key == b"\xff" * KEY_SIZE or key == bytes(KEY_SIZE):
        raise OtpError("device key not programmed")
    return key


def rdp_level():
    # Readout protection from the option bytes: 0 (0xAA), 2 (0xCC), else 1.
    rdp = (stm.mem32[FLASH_OPTCR] >> 8) & 0xFF
    if rdp == 0xAA:
        return 0
    if rdp == 0xCC:
        return 2
    return 1


def _wait():
    for _ in range(BUSY_SPINS):
        if not stm.mem32[FLASH_SR] & SR_BSY:
            err = stm.mem32[FLASH_SR] & SR_ERRORS
            if err:
                stm.mem32[FLASH_SR] = err  # the error flags clear by writing 1
                raise OtpError("flash interface error 0x%02x" % err)
            return
    raise OtpError("flash interface busy")


def _program(addr, data, word):
    # Program bytes (word=False, PSIZE x8) or 32-bit words (word=True) of OTP
    # through the flash interface, then lock the interface again.
    _wait()
    if stm.mem32[FLASH_CR] & CR_LOCK:
        stm.mem32[FLASH_KEYR] = KEY1
        stm.mem32[FLASH_KEYR] = KEY2
    try:
        psize = CR_PSIZE_X32 if word else CR_PSIZE_X8
        stm.mem32[FLASH_CR] = (stm.mem32[FLASH_CR] & ~CR_PSIZE_MASK) | psize | CR_PG
        if word:
            for i in range(0, len(data), 4):
                stm.mem32[addr + i] = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
                _wait()
        else:
            for i in range(len(data)):
                stm.mem8[addr + i] = data[i]
                _wait()
    finally:
        stm.mem32[FLASH_CR] = (stm.mem32[FLASH_CR] & ~CR_PG) | CR_LOCK
        _invalidate(addr, len(data))


def lock_console():
    # Program the console lock word: irreversible. Idempotent.
    if lock_state() == LOCKED:
        return
    _program(LOCK_WORD, b"\x00\x00\x00\x00", True)
    if lock_state() != LOCKED:
        raise OtpError("console lock word did not program")


def program_key(key):
    # Factory step, open board only (the caller checks): write the 16-byte
    # device key into OTP block 1, verify it, then lock the block.
    if len(key) != KEY_SIZE:
        raise ValueError("device key must be %d bytes" % KEY_SIZE)
    if _read(KEY_ADDR, KEY_SIZE) != b"\xff" * KEY_SIZE:
        raise OtpError("device key block already programmed")
    _program(KEY_ADDR, bytes(key), True)
    if _read(KEY_ADDR, KEY_SIZE) != bytes(key):
        raise OtpError("device key did not program")
    _program(OTP_LOCK_BASE + KEY_BLOCK, b"\x00", False)
