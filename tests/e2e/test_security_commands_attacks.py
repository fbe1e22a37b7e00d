"""Every bad signed command, sent through a REAL Mosquitto to a REAL simulated
board, is refused with its reason in a
sealed result record, and the agent keeps running: unsigned, unknown key,
revoked key, wrong role, expired, not yet valid, other device, malformed
envelope, malformed payload, replayed, replayed after a reset and after a
power cut. (Oversized envelopes never get past the broker, message_size_limit
1024; the device's own refusal: tests/device/test_security_inbox.py.)

The command policy is put on the board's flash before provisioning (its TUF
path: test_security_commands_board.py). Heap 384k, as integ2's provisioned
TUF + telemetry boards (test_update_attacks.py, test_telemetry_board_powercut.py):
at 256k a provisioned board keeps ~40 KB free beside its TLS session, in
pieces, and loading the verifier (~27 KiB of code) fails on every turn
(status commands.out_of_memory; see /work/reports/r3-commands.md, heap)."""
from __future__ import annotations

import json
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from host_tools.ops import commands as ops_commands
from host_tools.ops import envelope as E
from host_tools.ops.keys import OpsKeyring
from host_tools.provision.repl import ReplSession
from tests.e2e.telemetry_board_fixtures import board_fleet

DEVICE, MODEL = "pump-a1", "pump-v2"
HEAP = "384k"
OPS_PASS = "correct horse battery staple nine"


def _results(f, n, timeout=45.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rs = f.db.command_results(DEVICE)
        if len(rs) >= n:
            return rs
        time.sleep(0.2)
    raise AssertionError(f"{len(f.db.command_results(DEVICE))} results, wanted {n}; device "
                         f"{f.boards.status(DEVICE).get('device')}")


def test_every_bad_command_is_refused_on_a_board(tmp_path):
    ring = OpsKeyring(tmp_path / "ops")
    ring.init()
    ring.add("alice", "admin", OPS_PASS)
    ring.add("bob", "operator", OPS_PASS)
    ring.add("carol", "admin", OPS_PASS)
    carol = ring.private_key("carol", OPS_PASS)
    ring.revoke("carol")
    policy = ring.policy(MODEL)
    alice = ring.private_key("alice", OPS_PASS)
    bob = ring.private_key("bob", OPS_PASS)
    with board_fleet(tmp_path, [(DEVICE, MODEL)]) as f:
        port = f.start_board(DEVICE, MODEL, heap=HEAP)
        with ReplSession(port) as s:
            state = s.run_json("import json\nprint(json.dumps(board.mounts()['state']))")
            s.put_file(state + "/command-policy.json", json.dumps(policy).encode())
        f.provision(DEVICE, port, config={"watchdog_ms": 30000}, reset=False)
        f.boards.reset(DEVICE)
        f.wait_telemetry(DEVICE, lambda t: t.get("connected"), 90, "connected to the broker")
        f.boards.wait_for(DEVICE, lambda st: ((st.get("device") or {}).get("commands") or {}).get("policy")
                          == policy["version"], 30, "command policy read from flash")

        def send(data: bytes, want: str | None) -> dict:
            n = len(f.db.command_results(DEVICE))
            ops_commands.publish(f.workdir, f.broker.host, f.broker.port, DEVICE, data)
            r = _results(f, n + 1)[n]
            if want is None:
                assert r["result"] == "done", r
            else:
                assert r["result"] == "refused" and (r["reason"] or "").startswith(want), (want, r)
            return r

        def signed(key, who: str, cmd: str, args: list, iat: int | None = None, **kw) -> bytes:
            now = int(time.time())
            p = E.payload(cmd, args, ring.get(who).keyid, ops_commands.next_counter(ring, who),
                          now if iat is None else iat, **({"device": DEVICE} | kw))
            return E.seal(key, p)

        good = ops_commands.sign(ring, "bob", OPS_PASS, DEVICE, "report-now", [])
        send(good.envelope, None)
        text = json.loads(good.envelope)["payload"]
        send(json.dumps({"payload": text}).encode(), "unsigned")
        send(E.seal(Ed25519PrivateKey.generate(), json.loads(text)), "unknown key")
        send(signed(carol, "carol", "report-now", []), "revoked key")
        send(signed(bob, "bob", "reboot", []), "wrong role")
        now = int(time.time())
        send(signed(alice, "alice", "report-now", [], iat=now - 1000), "expired")
        send(signed(alice, "alice", "report-now", [], iat=now + 900), "not yet valid")
        p = E.payload("report-now", [], ring.get("alice").keyid, ops_commands.next_counter(ring, "alice"), now,
                      device="pump-zz")
        send(E.seal(alice, p), "other device")
        send(b"{not json", "malformed")
        # a payload that is not a command, validly signed by alice
        sig = {"keyid": ring.get("alice").keyid, "sig": alice.sign(b"[1, 2").hex()}
        send(json.dumps({"payload": "[1, 2", "sig": sig}).encode(), "malformed")
        send(good.envelope, "replayed")
        loops = (f.boards.status(DEVICE).get("device") or {}).get("loops", 0)

        # Counters are on flash: a reset, then a power cut, and the same
        # envelope (still inside its validity) is refused again.
        for cut in (f.boards.reset, f.boards.power_cut):
            boots = f.boards.status(DEVICE).get("boots", 0)
            cut(DEVICE)
            f.boards.wait_for(DEVICE, lambda st: st.get("boots", 0) > boots, 60, "rebooted")
            f.wait_telemetry(DEVICE, lambda t: t.get("connected"), 90, "reconnected")
            send(good.envelope, "replayed")
        # ... and a new command from the same operator is still accepted.
        send(ops_commands.sign(ring, "bob", OPS_PASS, DEVICE, "report-now", []).envelope, None)
        dev = f.boards.status(DEVICE).get("device") or {}
        assert dev.get("commands", {}).get("accepted") == 1, dev.get("commands")  # this boot
        assert loops > 0 and dev.get("heap_free"), dev
        print(f"{HEAP} board after the attacks: heap_free {dev['heap_free']}")
