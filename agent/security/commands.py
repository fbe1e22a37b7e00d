# Signed commands: verification (pure: bytes + policy + counters in, a
# command or CommandRefused out; no I/O). Execution: commands_run.py.
#
# Envelope (JSON, at most MAX_ENVELOPE bytes), as `medsentry command send`
# publishes it on medsentry/<device>/cmd:
#   {"payload": "<JSON text of the command>",
#    "sig": {"keyid": "<operator key id>", "sig": "<hex Ed25519 signature>"}}
# The signature covers the UTF-8 bytes of the payload string exactly as sent
# (no canonicalisation on the device). Payload:
#   {"type": "medsentry-command", "device": "<id>" | "model": "<model>",
#    "cmd": "<name>", "args": [...], "iat": <epoch s>, "exp": <epoch s>,
#    "issuer": "<keyid>", "ctr": <int, rises per issuer>}
#
# The command policy (a TUF target <model>/command-policy.json, see
# host_tools/ops): {"type": "command-policy", "model", "version",
#   "keys": {keyid: {"keytype": "ed25519", "scheme": "ed25519",
#                    "keyval": {"public": hex}, "role": name, "name": str}},
#   "revoked": [keyid, ...], "roles": {role: [command, ...]},
#   "max_validity_s": int}
import json
import binascii

MAX_ENVELOPE = 1024
MAX_VALIDITY_S = 600  # an expiry of at most minutes, whatever the policy says
CLOCK_SKEW_S = 60  # issued-at may lie this far in the device's future
COMMANDS = ("report-now", "check-update", "set-telemetry-period", "quarantine", "reboot", "unlock-console",
            "console-user")
# = agent.console.auth.ROLES and NAME_CHARS, not imported: every command turn
# would load the console's account code onto the heap for them.
CONSOLE_ROLES = ("viewer", "technician", "admin")
NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_."
MAX_ARGS = 4

# Refusal reasons (stable strings: results, events and tests use them).
OVERSIZED = "oversized"
MALFORMED = "malformed"
UNSIGNED = "unsigned"
UNKNOWN_KEY = "unknown key"
REVOKED_KEY = "revoked key"
BAD_SIGNATURE = "bad signature"
WRONG_ROLE = "wrong role"
EXPIRED = "expired"
NOT_YET_VALID = "not yet valid"
TOO_LONG = "validity too long"
REPLAYED = "replayed"
OTHER_DEVICE = "other device"
UNKNOWN_COMMAND = "unknown command"
BAD_ARGS = "bad arguments"
NO_POLICY = "no command policy"


class CommandRefused(ValueError):
    # A command that does not verify. reason: one of the strings above;
    # cmd: the parsed payload when it got that far (for the result record).
    def __init__(self, reason, detail=None, cmd=None):
        super().__init__(reason if detail is None else "%s: %s" % (reason, detail))
        self.reason = reason
        self.cmd = cmd


class PolicyError(ValueError):
    # The command policy document is malformed.
    pass


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


class Policy:
    def __init__(self, doc, model):
        if not isinstance(doc, dict) or doc.get("type") != "command-policy":
            raise PolicyError("not a command policy")
        if doc.get("model") != model:
            raise PolicyError("policy is for model %r, not %r" % (doc.get("model"), model))
        keys = doc.get("keys")
        roles = doc.get("roles")
        revoked = doc.get("revoked", [])
        if not isinstance(keys, dict) or not isinstance(roles, dict) or not isinstance(revoked, list):
            raise PolicyError("policy needs keys, roles and revoked")
        self.version = doc.get("version", 0)
        if not _int(self.version):
            raise PolicyError("policy version must be an int")
        for kid in keys:
            k = keys[kid]
            if not isinstance(k, dict) or k.get("keytype") != "ed25519" or k.get("scheme") != "ed25519":
                raise PolicyError("key %s: only ed25519 operator keys" % kid)
            if not isinstance(k.get("role"), str):
                raise PolicyError("key %s: no role" % kid)
        for r in roles:
            if not isinstance(roles[r], list):
                raise PolicyError("role %s: command list expected" % r)
        self.keys = keys
        self.roles = roles
        self.revoked = revoked
        mv = doc.get("max_validity_s", MAX_VALIDITY_S)
        self.max_validity = mv if _int(mv) and 0 < mv < MAX_VALIDITY_S else MAX_VALIDITY_S


def signed_by(key, sig, msg):
    # True when sig is the policy key's Ed25519 signature over msg. The
    # Ed25519 verifier itself (not updater.crypto.verify, the TUF key
    # dispatcher: ~4 KiB more code on the heap for one key type).
    from updater.crypto import ed25519

    try:
        return len(sig) == 64 and ed25519.Ed25519Key(binascii.unhexlify(key["keyval"]["public"])).verify(sig, msg)
    except (ValueError, KeyError, TypeError):  # Ed25519PointError, bad hex: not a key
        return False


def load_policy(data, model):
    try:
        doc = json.loads(data)
    except ValueError:
        raise PolicyError("policy is not JSON")
    return Policy(doc, model)


def parse_envelope(data):
    # -> (payload bytes, keyid, signature bytes). CommandRefused when bad.
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CommandRefused(MALFORMED, "not bytes")
    if len(data) > MAX_ENVELOPE:
        raise CommandRefused(OVERSIZED, "%d bytes > %d" % (len(data), MAX_ENVELOPE))
    try:
        env = json.loads(bytes(data))
    except (ValueError, UnicodeError):
        raise CommandRefused(MALFORMED, "envelope is not JSON")
    if not isinstance(env, dict) or not isinstance(env.get("payload"), str):
        raise CommandRefused(MALFORMED, "envelope needs a payload string")
    sig = env.get("sig")
    if sig is None:
        raise CommandRefused(UNSIGNED)
    if not isinstance(sig, dict) or not isinstance(sig.get("keyid"), str) or not isinstance(sig.get("sig"), str):
        raise CommandRefused(UNSIGNED, "signature needs keyid and sig")
    try:
        raw = binascii.unhexlify(sig["sig"])
    except ValueError:
        raise CommandRefused(BAD_SIGNATURE, "signature is not hex")
    return env["payload"].encode(), sig["keyid"], raw


def _payload(pb):
    try:
        c = json.loads(pb)
    except ValueError:
        raise CommandRefused(MALFORMED, "payload is not JSON")
    if not isinstance(c, dict) or c.get("type") != "medsentry-command":
        raise CommandRefused(MALFORMED, "payload is not a command")
    if not isinstance(c.get("cmd"), str) or not isinstance(c.get("issuer"), str):
        raise CommandRefused(MALFORMED, "payload needs cmd and issuer")
    for f in ("iat", "exp", "ctr"):
        if not _int(c.get(f)):
            raise CommandRefused(MALFORMED, "payload needs an integer %s" % f)
    args = c.get("args", [])
    if not isinstance(args, list) or len(args) > MAX_ARGS:
        raise CommandRefused(BAD_ARGS, "args must be a list of at most %d" % MAX_ARGS)
    c["args"] = args
    return c


def verify(policy, data, device_id, model, now, counters):
    # The command dict of a valid envelope, else CommandRefused. counters:
    # {issuer keyid: last accepted ctr} (persisted by the caller BEFORE the
    # command runs). Order: cheap structural checks, then the key and its
    # role, then ONE signature verification, then time and replay (only a
    # verified command may say anything about time or counters).
    pb, keyid, sig = parse_envelope(data)
    if policy is None:
        raise CommandRefused(NO_POLICY)
    if keyid in policy.revoked:
        raise CommandRefused(REVOKED_KEY, keyid[:16])
    key = policy.keys.get(keyid)
    if key is None:
        raise CommandRefused(UNKNOWN_KEY, keyid[:16])
    if not signed_by(key, sig, pb):
        raise CommandRefused(BAD_SIGNATURE)
    c = _payload(pb)
    if c["issuer"] != keyid:
        raise CommandRefused(BAD_SIGNATURE, "issuer is not the signing key", c)
    if "device" in c:
        if c["device"] != device_id:
            raise CommandRefused(OTHER_DEVICE, str(c["device"])[:32], c)
    elif c.get("model") != model:
        raise CommandRefused(OTHER_DEVICE, "model %s" % str(c.get("model"))[:32], c)
    if c["cmd"] not in COMMANDS:
        raise CommandRefused(UNKNOWN_COMMAND, c["cmd"][:32], c)
    allowed = policy.roles.get(key["role"], [])
    if c["cmd"] not in allowed and "*" not in allowed:
        raise CommandRefused(WRONG_ROLE, "%s may not %s" % (key["role"], c["cmd"]), c)
    if c["exp"] - c["iat"] > policy.max_validity or c["exp"] <= c["iat"]:
        raise CommandRefused(TOO_LONG, "%d s" % (c["exp"] - c["iat"]), c)
    if now >= c["exp"]:
        raise CommandRefused(EXPIRED, None, c)
    if c["iat"] > now + CLOCK_SKEW_S:
        raise CommandRefused(NOT_YET_VALID, None, c)
    last = counters.get(keyid)
    if last is not None and c["ctr"] <= last:
        raise CommandRefused(REPLAYED, "counter %d <= %d" % (c["ctr"], last), c)
    check_args(c["cmd"], c["args"], c)
    return c


def _user_name(name):
    if not isinstance(name, str) or not 0 < len(name) <= 32:
        return False
    for ch in name:
        if ch not in NAME_CHARS:
            return False
    return True


def check_args(cmd, args, c=None):
    n = len(args)
    if cmd in ("report-now", "check-update", "reboot"):
        ok = n == 0
    elif cmd == "quarantine":
        ok = n == 1 and args[0] in ("on", "off")
    elif cmd == "set-telemetry-period":
        ok = n == 1 and _int(args[0]) and 1 <= args[0] <= 3600
    elif cmd == "console-user":
        # add NAME ROLE SEALED (sealed for one board: never model-wide) | remove NAME
        ok = n >= 2 and _user_name(args[1]) and (
            (args[0] == "remove" and n == 2)
            or (args[0] == "add" and n == 4 and args[2] in CONSOLE_ROLES and isinstance(args[3], str)
                and (c is None or "device" in c)))
    else:  # unlock-console MINUTES
        ok = n == 1 and _int(args[0]) and 1 <= args[0] <= 240
    if not ok:
        raise CommandRefused(BAD_ARGS, "%s %s" % (cmd, repr(args)[:40]), c)
