# Console authentication: HMAC (RFC 2104) on the VM's native hashlib (sha1,
# sha256), PBKDF2-HMAC-SHA256 (RFC 8018), constant-time compare, TOTP
# (RFC 6238: SHA-1, 30 s steps, 6 digits, one step either side, a code
# accepted once), and the account store.
#
# Accounts: /state/console/accounts.json, written by provisioning.
# Per user: role, PBKDF2-HMAC-SHA256 salt and iteration count, and two secrets
# sealed under the board's device key (agent/keystore.py): the password
# verifier ("console-pw:<name>") and the TOTP key ("console-totp:<name>").
# A flash dump alone gives neither an offline password guess nor a TOTP key.
import binascii
import hashlib
import json

from agent import keystore
from board.compat import write_atomic

BLOCK = 64  # SHA-1 and SHA-256 block size


def _pads(name, key):
    h = getattr(hashlib, name)
    key = bytes(key)
    if len(key) > BLOCK:
        key = h(key).digest()
    key = key + bytes(BLOCK - len(key))
    ipad = bytearray(BLOCK)
    opad = bytearray(BLOCK)
    for i in range(BLOCK):
        ipad[i] = key[i] ^ 0x36
        opad[i] = key[i] ^ 0x5C
    return h, bytes(ipad), bytes(opad)


def _mac(h, ipad, opad, msg):
    inner = h(ipad)
    inner.update(msg)
    outer = h(opad)
    outer.update(inner.digest())
    return outer.digest()


def hmac(name, key, msg):
    h, ipad, opad = _pads(name, key)
    return _mac(h, ipad, opad, bytes(msg))


def pbkdf2_sha256(password, salt, iterations, dklen=32):
    if iterations < 1 or dklen < 1:
        raise ValueError("iterations and dklen must be positive")
    h, ipad, opad = _pads("sha256", password)
    out = b""
    block = 1
    while len(out) < dklen:
        u = _mac(h, ipad, opad, bytes(salt) + block.to_bytes(4, "big"))
        t = int.from_bytes(u, "big")
        for _ in range(iterations - 1):
            u = _mac(h, ipad, opad, u)
            t ^= int.from_bytes(u, "big")
        out += t.to_bytes(32, "big")
        block += 1
    return out[:dklen]


def ct_equal(a, b):
    # Time depends on the lengths only, never on where the bytes differ.
    a = bytes(a)
    b = bytes(b)
    diff = len(a) ^ len(b)
    n = len(a) if len(a) > len(b) else len(b)
    for i in range(n):
        x = a[i] if i < len(a) else 0
        y = b[i] if i < len(b) else 0
        diff |= x ^ y
    return diff == 0


# -- TOTP ------------------------------------------------------------------
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


def verify_totp(secret, code, now, last_step=-1):
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


# -- accounts -------------------------------------------------------------
ROLES = ("viewer", "technician", "admin")
MAX_USERS = 16
FILE = "/console/accounts.json"
# Work done for an unknown name, so timing does not tell names apart.
_DUMMY = {"salt": "00" * 16, "iter": 1000}


class AccountError(ValueError):
    pass


def pw_name(user):
    return "console-pw:" + user


def totp_name(user):
    return "console-totp:" + user


def load(state_dir):
    try:
        f = open(state_dir + FILE)
    except OSError:
        return {}
    try:
        with f:
            d = json.loads(f.read())
        users = d["users"]
        if not isinstance(users, dict) or len(users) > MAX_USERS:
            raise AccountError("bad user table")
        for name in users:
            u = users[name]
            if u["role"] not in ROLES or int(u["iter"]) < 1:
                raise AccountError("bad account %s" % name)
        return users
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise AccountError("console accounts unreadable: %s" % e)


def save(state_dir, users):
    write_atomic(state_dir + FILE, json.dumps({"format": 1, "users": users}))


NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_."


def valid_name(name):
    if not 0 < len(name) <= 32:
        return False
    for c in name:
        if c not in NAME_CHARS:
            return False
    return True


def make_record(device_key, name, role, salt, iterations, verifier, totp_secret):
    # One account as stored: the verifier (PBKDF2 output, computed by the
    # host) and the TOTP key sealed under this board's device key.
    if role not in ROLES:
        raise AccountError("unknown role %s" % role)
    if not valid_name(name):
        raise AccountError("bad user name %r" % name)
    h = binascii.hexlify
    return {"role": role, "salt": h(salt).decode(), "iter": int(iterations),
            "verifier": h(keystore.seal(device_key, pw_name(name), verifier)).decode(),
            "totp": h(keystore.seal(device_key, totp_name(name), totp_secret)).decode()}


def check_password(users, device_key, name, password):
    # (password_ok, TOTP key). The PBKDF2 work is done for known and unknown
    # names alike; the comparison is constant time.
    u = users.get(name)
    rec = u if u is not None else _DUMMY
    got = pbkdf2_sha256(password.encode(), binascii.unhexlify(rec["salt"]), int(rec["iter"]))
    pw_ok = False
    secret = b"\x00" * 20
    if u is not None:
        try:
            want = keystore.unseal(device_key, pw_name(name), binascii.unhexlify(u["verifier"]))
            secret = keystore.unseal(device_key, totp_name(name), binascii.unhexlify(u["totp"]))
            pw_ok = ct_equal(got, want)
        except (keystore.SealError, ValueError):
            pw_ok = False
    return pw_ok, secret


def check(users, device_key, name, password, code, now, last_step):
    # (password_ok and totp_ok, accepted step). Both factors are always
    # computed, for known and unknown names alike; comparisons are constant
    # time. Raises ClockUnset when the board clock is not set.
    pw_ok, secret = check_password(users, device_key, name, password)
    step = verify_totp(secret, code, now, last_step)
    ok = pw_ok and step is not None and name in users
    return ok, step
