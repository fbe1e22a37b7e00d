"""Demo stage for signed commands and the egress allow-list.

Operators alice (admin) and bob (operator) get keys; their command policy is
published as a signed TUF target per model and fetched by the boards' TUF
clients. Then: bob's `report-now` to pump-1 is accepted; a forged copy of an
admin command (payload changed after signing) and a replay of the accepted one
are refused; a pump-v2 patch whose code phones home to a host outside the
allow-list is installed and its connection is blocked by the board's network
guard. Writes `security.commands_accepted`, `commands_refused`, `egress_blocked`
(from the sealed result records in fleet.db and the boards' guard counters).
"""
from __future__ import annotations

import json
import socket
import time

from host_tools.demo.context import DemoContext
from host_tools.demo.updates import PASSPHRASES, SELFTEST, publish
from host_tools.ops import commands as ops_commands
from host_tools.ops.keys import OpsKeyring, key_name
from host_tools.ops.policy import publish_policy
from host_tools.release.session import open_session

STAGE_TIMEOUT = 150.0
TARGET = "pump-1"
PROBE = b'''

def _phone_home():
    # A patch that reports to a vendor cloud the fleet never allowed.
    import socket

    try:
        ai = socket.getaddrinfo("127.0.0.1", %d)[0]
        s = socket.socket()
        s.connect(ai[-1])
        s.close()
    except OSError:
        pass


_phone_home()
'''


def _wait(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.25)
    raise RuntimeError(f"demo: timed out waiting for {what}")


def _policy(ctx: DemoContext, name: str):
    return ((ctx.boards.status(name).get("device") or {}).get("commands") or {}).get("policy")


def stage_commands(ctx: DemoContext) -> None:
    tel = ctx.shared["telemetry"]
    broker, db = tel["broker"], tel["db"]
    work = ctx.shared["release_work"]
    ring = OpsKeyring(work)
    ring.init()
    ring.add("alice", "admin", PASSPHRASES.existing(key_name("alice")))
    ring.add("bob", "operator", PASSPHRASES.existing(key_name("bob")))
    with open_session(work, PASSPHRASES) as s:
        publish_policy(s, ring)
    version = ring.policy("pump-v2")["version"]
    _wait(lambda: _policy(ctx, TARGET) == version, STAGE_TIMEOUT, f"{TARGET} to fetch command policy {version}")
    ctx.console.print(f"[bold]command policy[/] {version} (alice: admin, bob: operator) fetched by {TARGET} via TUF")

    def send(data: bytes) -> dict:
        n = len(db.command_results(TARGET))
        ops_commands.publish(ctx.workdir, broker.host, broker.port, TARGET, data)
        return _wait(lambda: db.command_results(TARGET)[n:][:1], 60, f"a result from {TARGET}")[0]

    ok = ops_commands.sign(ring, "bob", PASSPHRASES.existing(key_name("bob")), TARGET, "report-now", [])
    r = send(ok.envelope)
    ctx.console.print(f"  bob: report-now -> {r['result']}")
    admin = ops_commands.sign(ring, "alice", PASSPHRASES.existing(key_name("alice")), TARGET,
                              "set-telemetry-period", ["1"])
    env = json.loads(admin.envelope)
    env["payload"] = env["payload"].replace('"args":[1]', '"args":[3600]')
    r = send(json.dumps(env).encode())
    ctx.console.print(f"  forged (payload changed after signing) -> {r['result']}: {r['reason']}")
    r = send(ok.envelope)
    ctx.console.print(f"  replay of bob's report-now -> {r['result']}: {r['reason']}")

    # A patch that phones home: blocked by the network guard, counted.
    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(1)
    try:
        patched = SELFTEST.read_bytes() + PROBE % sink.getsockname()[1]
        publish(ctx, "pump-v2", "1.2.0", 3, {"agent/selftest.py": patched})
        ctx.console.print("[bold]egress[/] pump-v2 1.2.0 published: its self-test phones home to 127.0.0.1:"
                          f"{sink.getsockname()[1]} (not on the allow-list)")
        _wait(lambda: _blocked(ctx, TARGET), STAGE_TIMEOUT, f"{TARGET} to run 1.2.0 and block its egress")
    finally:
        sink.close()
    results = db.command_results()
    blocked = sum(_blocked(ctx, n) for n in ctx.names)
    ctx.console.print(f"  {TARGET}: egress blocked {_blocked(ctx, TARGET)}x, agent still running "
                      f"({(ctx.boards.status(TARGET).get('device') or {}).get('version')})")
    sec = ctx.summary.setdefault("security", {})
    sec["commands_accepted"] = sum(1 for x in results if x["result"] == "done")
    sec["commands_refused"] = sum(1 for x in results if x["result"] == "refused")
    sec["egress_blocked"] = blocked


def _blocked(ctx: DemoContext, name: str) -> int:
    dev = ctx.boards.status(name).get("device") or {}
    return int((dev.get("egress") or {}).get("blocked") or 0)
