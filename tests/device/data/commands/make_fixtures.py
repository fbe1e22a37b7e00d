"""Regenerate cases.json (host, CPython): signed command envelopes and the
policy the device tests verify them against. Keys come from fixed seeds, so
the output is the same every run: `.venv/bin/python tests/device/data/commands/make_fixtures.py`."""
from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from host_tools.ops import envelope as E

NOW = 1_800_000_000
DEV, MODEL = "pump-1", "pump-v2"


def key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def kid(k: Ed25519PrivateKey) -> str:
    return E.keyid_of(E.public_hex(k.public_key()))


def main() -> None:
    admin, oper, revoked, stranger = key(1), key(2), key(3), key(4)
    policy = {"type": "command-policy", "model": MODEL, "version": 1, "max_validity_s": 600,
              "roles": {"admin": ["*"], "operator": ["report-now", "check-update", "set-telemetry-period"]},
              "keys": {kid(admin): dict(E.tuf_key(E.public_hex(admin.public_key())), role="admin", name="alice"),
                       kid(oper): dict(E.tuf_key(E.public_hex(oper.public_key())), role="operator", name="bob")},
              "revoked": [kid(revoked)]}

    def env(k, cmd="report-now", args=(), ctr=1, iat=NOW - 5, validity=300, **who):
        if not who:
            who = {"device": DEV}
        return E.seal(k, E.payload(cmd, list(args), kid(k), ctr, iat, validity, **who)).decode()

    good = env(admin, "quarantine", ["on"], ctr=5)
    g = json.loads(good)
    forged_payload = g["payload"].replace('"on"', '"off"')
    cases = [
        ["ok_admin_quarantine", good, None],
        ["ok_operator_report", env(oper, ctr=1), None],
        ["ok_model_wide", env(admin, "check-update", ctr=6, model=MODEL), None],
        ["unsigned", json.dumps({"payload": g["payload"]}), "unsigned"],
        ["forged_payload", json.dumps({"payload": forged_payload, "sig": g["sig"]}), "bad signature"],
        ["unknown_key", env(stranger), "unknown key"],
        ["revoked_key", env(revoked), "revoked key"],
        ["wrong_role", env(oper, "reboot", ctr=2), "wrong role"],
        ["expired", env(admin, ctr=7, iat=NOW - 400), "expired"],
        ["not_yet_valid", env(admin, ctr=8, iat=NOW + 200), "not yet valid"],
        ["longest_validity", env(admin, ctr=9, validity=600, iat=NOW - 1), None],
        ["other_device", env(admin, ctr=10, device="pump-2"), "other device"],
        ["other_model", env(admin, ctr=11, model="monitor-v1"), "other device"],
        ["malformed_json", '{"payload": "x", "sig": ', "malformed"],
        ["malformed_cbor", "\u00a2ahello", "malformed"],
        ["oversized", json.dumps({"payload": "x" * 1100}), "oversized"],
        # payload() does not check arguments (parse_args does, on the host).
        ["bad_args", env(admin, "unlock-console", [999], ctr=12), "bad arguments"],
    ]
    out = {"now": NOW, "device": DEV, "model": MODEL, "policy": policy, "cases": cases,
           "replay": good}
    Path(__file__).with_name("cases.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
