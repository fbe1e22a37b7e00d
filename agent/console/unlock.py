# One-time unlock tokens: the second factor of a console login when TOTP
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

PURPOSE = b"medsentry-console-unlock-v1"
COMMAND = "unlock-console"  # the policy right that allows signing tokens
KEYID_HEX = 16
SIG_HEX = 128
TOKEN_LEN = KEYID_HEX + 1 + SIG_HEX
POLICY_FILE = "/command-policy.json"


def message(device_id, user, challenge):
    return PURPOSE + ("\n%s\n%s\n%s" % (device_id, user, challenge)).encode()


def check(state_dir, model, device_id, user, challenge, token):
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
        with open(state_dir + POLICY_FILE, "rb") as f:
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
    allowed = policy.roles.get(key["role"], [])
    if COMMAND not in allowed and "*" not in allowed:
        return "wrong role"
    from updater.crypto import ed25519

    try:
        ok = ed25519.Ed25519Key(binascii.unhexlify(key["keyval"]["public"])).verify(
            sig, message(device_id, user, challenge))
    except (ValueError, KeyError, TypeError):
        ok = False
    return None if ok else "bad signature"
