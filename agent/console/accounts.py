# Console accounts: /state/console/accounts.json, written by provisioning.
# Per user: role, PBKDF2-HMAC-SHA256 salt and iteration count, and two secrets
# sealed under the board's device key (agent/keystore.py): the password
# verifier ("console-pw:<name>") and the TOTP key ("console-totp:<name>").
# A flash dump alone gives neither an offline password guess nor a TOTP key.
import binascii
import json

from agent import keystore
from agent.console import mac, totp
from board.compat import write_atomic

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


def check(users, device_key, name, password, code, now, last_step):
    # (password_ok and totp_ok, accepted step). Both factors are always
    # computed, for known and unknown names alike; comparisons are constant
    # time. Raises totp.ClockUnset when the board clock is not set.
    u = users.get(name)
    rec = u if u is not None else _DUMMY
    got = mac.pbkdf2_sha256(password.encode(), binascii.unhexlify(rec["salt"]), int(rec["iter"]))
    pw_ok = False
    secret = b"\x00" * 20
    if u is not None:
        try:
            want = keystore.unseal(device_key, pw_name(name), binascii.unhexlify(u["verifier"]))
            secret = keystore.unseal(device_key, totp_name(name), binascii.unhexlify(u["totp"]))
            pw_ok = mac.ct_equal(got, want)
        except (keystore.SealError, ValueError):
            pw_ok = False
    step = totp.verify(secret, code, now, last_step)
    ok = pw_ok and step is not None and u is not None
    return ok, step
