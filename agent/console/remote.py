# What operators do to the console of a provisioned board from afar (its UART
# is closed; host side: host_tools/console/remote.py). Loaded on use and
# released after (the command turn, the login that checks a token).
#
# 1. Accounts changed by the signed command `console-user`
# (agent/security/commands_run.py runs it once commands.py verified the
# operator's signature, role, expiry and counter):
#
#   args ["add", name, role, hex(kid 8 | nonce 13 | AES-CCM ciphertext+tag 16)]
#        ["remove", name]
#
# The secrets of an added account (PBKDF2 salt, iterations and verifier, the
# TOTP key) are sealed by the host for this one board: AES-CCM under
#   HMAC-SHA256(telemetry key, "medsentry console-user v1")[:16]
# (the per-device key the host already shares with this board and nobody
# else; derived, so nothing is ever encrypted under the telemetry key itself),
# with AAD = "medsentry-console-user:" device "\n" name "\n" role, so a blob
# is good for one board, one name and one role only. Plaintext:
#   salt 16 | iterations u32 big-endian | verifier 32 | TOTP key 10..64
# The board opens it in RAM and seals verifier and TOTP key again under its
# device key (auth.make_record, agent/keystore.py) before anything reaches
# flash, exactly as provisioning does.
#
# 2. One-time unlock tokens: the second factor of a console login when TOTP
# cannot be checked (the board clock is unset: no RTC battery, never synced).
#
# After the password the console shows a fresh random challenge (16 bytes
# from os.urandom, held in RAM only: a reset forgets it, so a token read
# over a shoulder is worthless after a power cut). An operator whose role
# may run `unlock-console` in the command policy (the TUF target the signed
# commands use) signs, with his Ed25519 operator key,
#   "medsentry-console-unlock-v1\n" device "\n" user "\n" challenge
# (`medsentry console unlock-token DEVICE USER CHALLENGE --as OPERATOR`).
# The token typed at `unlock token:` is "<first 16 hex of the key id>:<128
# hex signature>". The challenge is consumed before the token is checked:
# one challenge, one attempt, one login, one user. Nothing here needs time.
import binascii

from agent.console import auth as acc

KDF_LABEL = b"medsentry console-user v1"
AAD_PREFIX = b"medsentry-console-user:"
KID_LEN = 8
NONCE_LEN = 13
TAG_LEN = 16
MAX_BLOB_HEX = 2 * (KID_LEN + NONCE_LEN + 16 + 4 + 32 + 64 + TAG_LEN)
MAX_ITER = 1000000


class EnrolError(ValueError):
    # The sealed account does not open or does not make an account.
    pass


def account_key(tel_key):
    return acc.hmac("sha256", tel_key, KDF_LABEL)[:16]


def aad(device_id, name, role):
    return AAD_PREFIX + ("%s\n%s\n%s" % (device_id, name, role)).encode()


def open_account(tel_kid, tel_key, device_id, name, role, blob_hex):
    # -> (salt, iterations, verifier, totp key); EnrolError when it does not open.
    from agent.telemetry.aes_ccm import AESCCM, CCMError

    if not isinstance(blob_hex, str) or len(blob_hex) > MAX_BLOB_HEX:
        raise EnrolError("sealed account too long")
    try:
        blob = binascii.unhexlify(blob_hex)
    except ValueError:
        raise EnrolError("sealed account is not hex")
    if len(blob) < KID_LEN + NONCE_LEN + TAG_LEN + 52 + 10:
        raise EnrolError("sealed account too short")
    if blob[:KID_LEN] != bytes(tel_kid):
        raise EnrolError("sealed for another telemetry key")
    nonce = blob[KID_LEN:KID_LEN + NONCE_LEN]
    try:
        pt = AESCCM(account_key(tel_key), TAG_LEN).decrypt(nonce, blob[KID_LEN + NONCE_LEN:],
                                                           aad(device_id, name, role))
    except CCMError:
        raise EnrolError("sealed account does not open on this board")
    iterations = int.from_bytes(pt[16:20], "big")
    if not 1 <= iterations <= MAX_ITER:
        raise EnrolError("iterations out of range")
    return pt[:16], iterations, pt[20:52], pt[52:]


def apply(state_dir, device_key, ident, args):
    # Runs one verified console-user command. None when done, else the
    # refusal reason (the account table is left as it was).
    op, name = args[0], args[1]
    users = acc.load(state_dir)  # AccountError (a ValueError): refused, nothing written
    try:
        import os

        os.mkdir(state_dir + "/console")
    except OSError:
        pass
    if op == "remove":
        if name not in users:
            return "no account %s" % name
        del users[name]
        acc.save(state_dir, users)
        _emit("remove", name, None)
        return None
    role = args[2]
    if name not in users and len(users) >= acc.MAX_USERS:
        return "%d accounts already" % acc.MAX_USERS
    try:
        salt, iterations, verifier, secret = open_account(
            ident["kid"], ident["key"], ident["device_id"], name, role, args[3])
    except EnrolError as e:
        return "sealed account refused: %s" % e
    users[name] = acc.make_record(device_key, name, role, salt, iterations, verifier, secret)
    acc.save(state_dir, users)  # atomic: the old table or the new one
    _emit("add", name, role)
    return None


def _emit(op, name, role):
    d = {"op": op, "user": name}
    if role:
        d["role"] = role
    _emit_event("console_account", "info", d)


def _emit_event(kind, severity, detail):
    try:
        from agent.security import events
    except ImportError:
        return
    events.emit(kind, severity, detail)


# -- one-time unlock tokens ------------------------------------------------
PURPOSE = b"medsentry-console-unlock-v1"
COMMAND = "unlock-console"  # the policy right that allows signing tokens
KEYID_HEX = 16
SIG_HEX = 128
TOKEN_LEN = KEYID_HEX + 1 + SIG_HEX
TOKEN_POLICY = "/command-policy.json"


def message(device_id, user, challenge):
    return PURPOSE + ("\n%s\n%s\n%s" % (device_id, user, challenge)).encode()


def check_token(state_dir, model, device_id, user, challenge, token):
    # None when the token is a valid signature over this challenge by an
    # operator key allowed to unlock the console; else the reason.
    token = token.strip()
    if len(token) != TOKEN_LEN or token[KEYID_HEX] != ":":
        return "malformed token"
    prefix = token[:KEYID_HEX].lower()
    try:
        sig = binascii.unhexlify(token[KEYID_HEX + 1:])
    except ValueError:
        return "malformed token"
    from agent.security import commands as C

    try:
        with open(state_dir + TOKEN_POLICY, "rb") as f:
            policy = C.load_policy(f.read(), model)
    except OSError:
        return "no command policy on this board"
    except C.PolicyError as e:
        return "command policy unusable: %s" % e
    for r in policy.revoked:
        if r[:KEYID_HEX] == prefix:
            return "revoked key"
    key = None
    for kid in policy.keys:
        if kid[:KEYID_HEX] == prefix:
            key = policy.keys[kid]
    if key is None:
        return "unknown key"
    # The role check of commands.verify (kept inline there: that module's .mpy
    # must stay within one 4 KiB flash block).
    allowed = policy.roles.get(key["role"], [])
    if COMMAND not in allowed and "*" not in allowed:
        return "wrong role"
    return None if C.signed_by(key, sig, message(device_id, user, challenge)) else "bad signature"


# -- the console's side (agent/console/shell.py calls these through _remote) --
def ask_token(sh):
    # After the password, with the board clock unset: a fresh challenge (RAM
    # only) and what the technician asks an operator for.
    import os

    sh.challenge = binascii.hexlify((sh.entropy or os.urandom)(16)).decode()
    sh.stage = "token"
    sh._say("board clock unset: TOTP cannot be checked. Ask an operator for a one-time unlock token:")
    sh._say("  medsentry console unlock-token %s %s %s --as OPERATOR" % (sh.device[0], sh.pending[0], sh.challenge))


def token_login(sh, users, name, password, challenge, token):
    # (ok, refusal reason of the token or None). Both factors are checked
    # whatever the other gives; the attempt is already counted (lockout).
    pw_ok = acc.check_password(users, sh.device_key, name, password)[0]
    why = check_token(sh.state_dir, sh.device[1], sh.device[0], name, challenge, token)
    _emit_event("console_unlock_token", "warning" if why else "info",
                {"user": name if name in users else "?", "result": why or "ok"})
    return pw_ok and why is None and name in users, why

