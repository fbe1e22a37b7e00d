"""Regenerate console.json (host, CPython): console-user commands (accounts sealed
for one board by host_tools/console/remote.py, signed by host_tools/ops) and
one-time unlock tokens, for the device tests in test_console_enrol.py. Fixed keys
and nonces: the output is the same every run
(`.venv/bin/python tests/device/data/commands/make_console_fixtures.py`;
tests/host/test_console_remote.py checks the file is current)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from host_tools.console import remote
from host_tools.ops import envelope as E
from host_tools.pki.records import TelemetryKey
from make_fixtures import DEV, MODEL, NOW, key, kid

OTHER = "pump-2"
TEL = TelemetryKey(kid=bytes(range(8)), key=bytes(range(16, 32)), base_iv=bytes(13), created="")
OTHER_TEL = TelemetryKey(kid=bytes(range(8, 16)), key=bytes(range(32, 48)), base_iv=bytes(13), created="")
PASSWORD = "tech-pass-123"
SALT = bytes(range(100, 116))
ITER = 50
TOTP = bytes(range(200, 220))
CHALLENGE = "00112233445566778899aabbccddeeff"


def main() -> None:
    admin, oper, revoked, biomed = key(1), key(2), key(3), key(5)
    policy = {"type": "command-policy", "model": MODEL, "version": 1, "max_validity_s": 600,
              "roles": {"admin": ["*"], "operator": ["report-now", "check-update", "set-telemetry-period"],
                        "biomed": ["report-now", "unlock-console"]},
              "keys": {kid(k): dict(E.tuf_key(E.public_hex(k.public_key())), role=r, name=n)
                       for k, r, n in ((admin, "admin", "alice"), (oper, "operator", "bob"),
                                       (biomed, "biomed", "carol"))},
              "revoked": [kid(revoked)]}
    verifier = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), SALT, ITER, 32)

    def sealed(name="tom", role="technician", tk=TEL, device=DEV, nonce=b"\x01" * 13):
        return remote.seal_account(tk, device, name, role, SALT, ITER, verifier, TOTP, nonce)

    def env(k, args, ctr, **who):
        who = who or {"device": DEV}
        return E.seal(k, E.payload("console-user", args, kid(k), ctr, NOW - 5, 300, **who)).decode()

    add = env(admin, ["add", "tom", "technician", sealed()], 10)
    forged = json.loads(add)
    forged["payload"] = forged["payload"].replace('"technician"', '"admin"')
    good = sealed()
    garbled = good[:-40] + ("0" if good[-40] != "0" else "1") + good[-39:]
    cases = [
        ["add_ok", add, None],
        ["remove_ok", env(admin, ["remove", "tom"], 11), None],
        ["add_by_operator", env(oper, ["add", "eve", "admin", sealed("eve", "admin")], 1), "wrong role"],
        ["add_forged_role", json.dumps(forged, separators=(",", ":")), "bad signature"],
        ["add_garbled_seal", env(admin, ["add", "tom", "technician", garbled], 12), "sealed account refused"],
        ["add_role_not_sealed", env(admin, ["add", "tom", "admin", good], 13), "sealed account refused"],
        ["add_other_board_seal", env(admin, ["add", "tom", "technician", sealed(device=OTHER, tk=OTHER_TEL)], 14),
         "sealed account refused"],
        ["add_model_wide", env(admin, ["add", "tom", "technician", good], 15, model=MODEL), "bad arguments"],
        ["add_bad_name", env(admin, ["add", "Tom!", "technician", good], 16), "bad arguments"],
    ]
    ring_ops = {"alice": admin, "bob": oper, "carol": biomed, "mallory": revoked}

    def token(who, user="tom", challenge=CHALLENGE, device=DEV):
        k = ring_ops[who]
        return kid(k)[:16] + ":" + k.sign(remote.unlock_message(device, user, challenge)).hex()

    tokens = [
        ["ok_admin", token("alice"), None],
        ["ok_biomed", token("carol"), None],
        ["operator_role", token("bob"), "wrong role"],
        ["revoked", token("mallory"), "revoked key"],
        ["other_user", token("alice", user="ada"), "bad signature"],
        ["other_board", token("alice", device=OTHER), "bad signature"],
        ["other_challenge", token("alice", challenge="ff" * 16), "bad signature"],
        ["unknown_key", kid(key(9))[:16] + ":" + key(9).sign(remote.unlock_message(DEV, "tom", CHALLENGE)).hex(),
         "unknown key"],
        ["malformed", "123456", "malformed token"],
    ]
    out = {"now": NOW, "device": DEV, "model": MODEL, "policy": policy, "cases": cases,
           "tel": {"kid": TEL.kid.hex(), "key": TEL.key.hex()}, "password": PASSWORD, "totp": TOTP.hex(),
           "challenge": CHALLENGE, "tokens": tokens}
    Path(__file__).with_name("console.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
