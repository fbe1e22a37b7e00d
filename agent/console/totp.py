# TOTP (RFC 6238): HMAC-SHA-1, 30 s steps, 6 digits, one step either side.
# A code is accepted once: verify() only accepts a step later than the last
# accepted one (the caller keeps it on flash).
from agent.console.mac import hmac, ct_equal

STEP = 30
DIGITS = 6
WINDOW = 1
# Board clocks before this are "unset" (no RTC battery, never synced).
CLOCK_MIN = 1704067200  # 2024-01-01T00:00:00Z


class ClockUnset(ValueError):
    pass


def hotp(secret, counter, digits=DIGITS):
    mac = hmac("sha1", secret, counter.to_bytes(8, "big"))
    off = mac[19] & 15
    v = ((mac[off] & 0x7F) << 24) | (mac[off + 1] << 16) | (mac[off + 2] << 8) | mac[off + 3]
    s = str(v % (10 ** digits))
    return "0" * (digits - len(s)) + s


def at(secret, now, digits=DIGITS):
    return hotp(secret, int(now) // STEP, digits)


def verify(secret, code, now, last_step=-1):
    # The accepted step, or None. Every candidate is computed and compared
    # (constant work); a step <= last_step is a replay and never matches.
    if now < CLOCK_MIN:
        raise ClockUnset("board clock unset: TOTP refused")
    code = str(code).strip().encode()
    step = int(now) // STEP
    found = None
    for s in range(step - WINDOW, step + WINDOW + 1):
        ok = ct_equal(hotp(secret, s).encode(), code)
        if ok and s > last_step and found is None:
            found = s
    return found
