"""Signed commands and the egress allow-list on a REAL simulated board, with a
REAL Mosquitto (mutual TLS, operator identity) and a REAL TUF repository (the
command policy is a signed target of the model's role, fetched by the device's
TUF client): an operator's command is accepted; a forged, a replayed (also
after a reset), a wrong-role and a revoked-key command are refused, each with
a sealed result record in the collector and the agent still running; quarantine
narrows the egress allow-list; a patch whose code tries to reach another host
is blocked, counted, and the agent keeps running."""
from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

from host_tools.collector import security_db
from host_tools.fleet import fleet_status
from host_tools.ops import commands as ops_commands
from host_tools.ops import envelope as E
from host_tools.ops.keys import OpsKeyring
from host_tools.ops.policy import publish_policy
from host_tools.release.quickstart import DemoPassphrases, device_tree, ensure_models, publish_tree
from host_tools.release.session import open_session
from tests.e2e.telemetry_board_fixtures import board_fleet

HOST_DIR = Path(__file__).resolve().parents[1] / "host"
if str(HOST_DIR) not in sys.path:
    sys.path.insert(0, str(HOST_DIR))
from tuf_repo import serve  # noqa: E402

PASS = DemoPassphrases("commands-e2e")
OPS_PASS = "correct horse battery staple nine"
DEVICE, MODEL = "pump-c1", "pump-v2"
HEAP = "384k"

# A patch whose code phones home to a host outside the allow-list (and, like a
# careless library, swallows the error): loaded at every boot by the self-test.
PROBE = b'''
_PROBE_PORT = %d


def _phone_home():
    import socket

    try:
        ai = socket.getaddrinfo("127.0.0.1", _PROBE_PORT)[0]
        s = socket.socket()
        s.connect(ai[-1])
        s.close()
    except OSError:
        pass
'''


def _result(f, ctr, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in f.db.command_results(DEVICE):
            if r["ctr"] == ctr:
                return r
        time.sleep(0.2)
    raise AssertionError(f"no result for ctr {ctr}; results {f.db.command_results(DEVICE)}; "
                         f"device {f.boards.status(DEVICE).get('device', {}).get('commands')}")


def _wait_posture(f, pred, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not pred(security_db.postures(f.db, DEVICE)):
        assert time.monotonic() < deadline, f"{what}: none in {timeout:.0f} s"
        time.sleep(0.2)


def _wait_quiet_postures(f, quiet=3.0, timeout=60.0):
    # Until the start-up posture reports are in and none came for `quiet` s.
    deadline = time.monotonic() + timeout
    n, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        m = len(security_db.postures(f.db, DEVICE))
        if m != n:
            n, since = m, time.monotonic()
        elif m > 0 and time.monotonic() - since >= quiet:
            return
        time.sleep(0.2)
    raise AssertionError("posture reports did not settle")


def _send(f, data):
    ops_commands.publish(f.workdir, f.broker.host, f.broker.port, DEVICE, data)


def _device(f):
    return f.boards.status(DEVICE).get("device") or {}


def test_signed_commands_and_egress_on_a_board(tmp_path):
    rel = tmp_path / "release"
    root = ensure_models(rel, PASS, (MODEL,))
    ring = OpsKeyring(rel)
    ring.init()
    ring.add("alice", "admin", OPS_PASS)
    ring.add("bob", "operator", OPS_PASS)
    with open_session(rel, PASS) as s:
        publish_policy(s, ring)
    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(4)
    sink.settimeout(0.2)
    with serve(rel / "repository") as srv, board_fleet(tmp_path, [(DEVICE, MODEL)]) as f:
        # 384k, as integ2's provisioned TUF + telemetry boards: at 256k a
        # provisioned board's TUF check runs out of memory on integ2 already.
        port = f.start_board(DEVICE, MODEL, heap=HEAP)
        cfg = {"watchdog_ms": 30000, "update": {"metadata_url": srv.url + "/metadata",
                                                "targets_url": srv.url + "/targets", "check_every_s": 3,
                                                "trial_deadline_s": 60, "health_loops": 3}}
        f.provision(DEVICE, port, config=cfg, tuf_root=root.read_bytes(), reset=False)
        f.boards.reset(DEVICE)
        f.wait_telemetry(DEVICE, lambda t: t.get("connected"), 60, "connected to the broker")
        f.boards.wait_for(DEVICE, lambda st: ((st.get("device") or {}).get("commands") or {}).get("policy") == 3,
                          90, "command policy fetched through TUF")

        # 1. accepted: an operator's report-now, which sends a posture report
        #    (the security monitor is on by default on a 384 KiB board)
        _wait_quiet_postures(f)
        n_post = len(security_db.postures(f.db, DEVICE))
        sent = ops_commands.sign(ring, "bob", OPS_PASS, DEVICE, "report-now", [])
        _send(f, sent.envelope)
        assert _result(f, sent.ctr)["result"] == "done"
        _wait_posture(f, lambda ps: len(ps) > n_post, "a posture report for report-now")

        # 2. forged: the signed payload changed in transit
        good = ops_commands.sign(ring, "alice", OPS_PASS, DEVICE, "set-telemetry-period", ["2"])
        env = json.loads(good.envelope)
        env["payload"] = env["payload"].replace('"args":[2]', '"args":[3600]')
        n = len(f.db.command_results(DEVICE))
        _send(f, json.dumps(env).encode())
        _send(f, good.envelope)
        _send(f, good.envelope)  # 3. replayed
        rs = f.results_after(DEVICE, n, 3)
        assert [(r["result"], (r["reason"] or "").split(":")[0]) for r in rs] == [
            ("refused", "bad signature"), ("done", ""), ("refused", "replayed")], rs
        assert rs[0]["ctr"] is None and rs[1]["ctr"] == rs[2]["ctr"] == good.ctr

        # 4. wrong role: bob (operator) may not reboot - signed with his own key
        bob = ring.private_key("bob", OPS_PASS)
        p = E.payload("reboot", [], ring.get("bob").keyid, ops_commands.next_counter(ring, "bob"),
                      int(time.time()), device=DEVICE)
        _send(f, E.seal(bob, p))
        assert _result(f, p["ctr"])["reason"].startswith("wrong role")

        # 5. quarantine on: the allow-list narrows (no extras configured: same
        #    endpoints), the flag persists, reported
        q = ops_commands.sign(ring, "alice", OPS_PASS, DEVICE, "quarantine", ["on"])
        _send(f, q.envelope)
        assert _result(f, q.ctr)["result"] == "done"
        _wait_posture(f, lambda ps: ps and ps[-1]["report"].get("quarantine") is True,
                      "the posture report saying quarantine")
        assert fleet_status(f.workdir)["devices"][0]["device_quarantine"] is True

        # 6. replay across a reset (counters on flash)
        f.boards.reset(DEVICE)
        f.wait_telemetry(DEVICE, lambda t: t.get("connected"), 60, "reconnected after the reset")
        n = len(f.db.command_results(DEVICE))
        _send(f, good.envelope)
        last = f.results_after(DEVICE, n, 1)[0]
        assert last["ctr"] == good.ctr and last["reason"].startswith("replayed"), last

        # 7. revoked: bob revoked, policy republished, fetched on the next check
        ring.revoke("bob")
        with open_session(rel, PASS) as s:
            publish_policy(s, ring)
        f.boards.wait_for(DEVICE, lambda st: ((st.get("device") or {}).get("commands") or {}).get("policy") == 4,
                          90, "new command policy fetched")
        p = E.payload("report-now", [], ring.get("bob").keyid, ops_commands.next_counter(ring, "bob"),
                      int(time.time()), device=DEVICE)
        n = len(f.db.command_results(DEVICE))
        _send(f, E.seal(bob, p))
        # Refused before the signature is checked: nothing of the unverified
        # payload (command, counter) goes into the result.
        r = f.results_after(DEVICE, n, 1)[0]
        assert r["reason"].startswith("revoked key") and r["ctr"] is None, r

        # 8. a patch that tries to reach another host: blocked, counted, the
        #    agent keeps running (and the patch is confirmed)
        selftest = (Path(__file__).resolve().parents[2] / "agent" / "selftest.py").read_bytes()
        patched = selftest + PROBE % sink.getsockname()[1] + b"\n_phone_home()\n"
        tree = device_tree(tmp_path / "tree", {"agent/selftest.py": patched})
        publish_tree(rel, PASS, MODEL, "1.1.0", 2, tree)
        st = f.boards.wait_for(DEVICE, lambda st: (st.get("device") or {}).get("version") == "1.1.0"
                               and ((st["device"].get("egress") or {}).get("blocked") or 0) >= 1, 180,
                               "patched agent running with its egress blocked")
        try:
            conn, _ = sink.accept()
            conn.close()
            raise AssertionError("the patch reached the other host")
        except socket.timeout:
            pass
        # The agent keeps running: connected to the broker, its loop going on.
        f.wait_telemetry(DEVICE, lambda t: t.get("connected"), 60, "patched agent connected")
        loops = _device(f)["loops"]
        f.boards.wait_for(DEVICE, lambda s: (s.get("device") or {}).get("loops", 0) > loops + 2, 30, "loops go on")
        dev = _device(f)
        assert dev["version"] == "1.1.0" and dev["egress"]["blocked"] >= 1, dev["egress"]
        eps = dev["egress"]["endpoints"]
        assert f"127.0.0.1:{f.broker.port}" in eps and f"127.0.0.1:{sink.getsockname()[1]}" not in eps, eps
    sink.close()
