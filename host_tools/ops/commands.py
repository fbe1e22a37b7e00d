"""Sign and send commands (``medsentry command send``), list them (``command list``).

Each send takes the operator's next counter (``ops/counters.json``, under a lock,
written before the command leaves: a counter is never used twice), signs the
envelope (host_tools/ops/envelope.py), publishes it QoS 1 on
``medsentry/<device>/cmd`` with the fleet's ``operator`` TLS identity, and
appends it to ``ops/commands.jsonl``. The device answers with a sealed result
record the collector stores (``command_results`` in fleet.db)."""
from __future__ import annotations

import fcntl
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from host_tools.ops import envelope as E
from host_tools.ops.keys import OpsError, OpsKeyring
from host_tools.release.fsutil import write_atomic

PUBLISH_TIMEOUT_S = 10.0


@dataclass
class Sent:
    device: str
    command: str
    args: list[Any]
    operator: str
    ctr: int
    iat: int
    exp: int
    envelope: bytes


def next_counter(ring: OpsKeyring, operator: str) -> int:
    """The operator's next counter: above the last one used and at least the
    current time in milliseconds (so several hosts sharing a key still rise)."""
    ring.dir.mkdir(parents=True, exist_ok=True)
    path = ring.dir / "counters.json"
    with open(ring.dir / "counters.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            doc = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            raise OpsError(f"{path} is corrupt: fix it by hand (counters must only rise)") from None
        ctr = max(int(doc.get(operator, 0)) + 1, int(time.time() * 1000))
        doc[operator] = ctr
        write_atomic(path, (json.dumps(doc, sort_keys=True) + "\n").encode(), 0o600)
    return ctr


def sign(ring: OpsKeyring, operator: str, passphrase: str, device: str, command: str, args: list[str],
         validity_s: int = 300, now: float | None = None) -> Sent:
    typed = E.parse_args(command, args)
    key = ring.private_key(operator, passphrase)
    op = ring.get(operator)
    if not ring.may(op, command):
        raise OpsError(f"role {op.role} of {operator} may not run {command}")
    ctr = next_counter(ring, operator)
    iat = int(time.time() if now is None else now)
    p = E.payload(command, typed, op.keyid, ctr, iat, validity_s, device=device)
    return Sent(device, command, typed, operator, ctr, iat, p["exp"], E.seal(key, p))


def publish(workdir: str | Path, host: str, port: int, topic_device: str, data: bytes) -> None:
    """QoS 1 publish with the fleet's operator identity; waits for the PUBACK."""
    from host_tools.collector.service import tls_client
    from host_tools.pki import FleetPKI

    ident = FleetPKI(workdir).client_identity("operator")
    if not ident.cert.exists():
        raise OpsError(f"no operator TLS identity in {ident.cert.parent}: run `medsentry pki init`")
    client = tls_client(ident, "operator")
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        raise OpsError(f"cannot reach the broker at {host}:{port}: {exc}") from None
    client.loop_start()
    try:
        info = client.publish(f"medsentry/{topic_device}/cmd", data, qos=1)
        info.wait_for_publish(PUBLISH_TIMEOUT_S)
        if not info.is_published():
            raise OpsError(f"the broker did not acknowledge the command within {PUBLISH_TIMEOUT_S:.0f} s")
    finally:
        client.disconnect()
        client.loop_stop()


def record(ring: OpsKeyring, sent: Sent) -> None:
    line = {"time": time.time(), "device": sent.device, "cmd": sent.command, "args": sent.args,
            "operator": sent.operator, "ctr": sent.ctr, "iat": sent.iat, "exp": sent.exp}
    with open(ring.dir / "commands.jsonl", "a") as fh:
        fh.write(json.dumps(line, sort_keys=True) + "\n")


def wait_result(db_path: str | Path, device: str, ctr: int, timeout: float) -> dict[str, Any] | None:
    """The device's result for the command with counter `ctr` (from the fleet store:
    an SQLite path or a postgresql:// URL), or None."""
    from host_tools.collector import FleetDB
    from host_tools.collector.dbconn import store_missing

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store_missing(db_path) is None:
            db = FleetDB(db_path)
            try:
                for r in db.command_results(device):
                    if r["ctr"] == ctr:
                        return r
            finally:
                db.close()
        time.sleep(0.3)
    return None


def listing(ring: OpsKeyring, db_path: str | Path) -> list[dict[str, Any]]:
    """Sent commands (newest last) joined with the results devices reported."""
    ring.operators()  # a clear error when this work directory has no operators
    sent: list[dict[str, Any]] = []
    path = ring.dir / "commands.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                sent.append(json.loads(line))
            except ValueError:
                continue
    results: dict[tuple[str, int], dict[str, Any]] = {}
    from host_tools.collector.dbconn import store_missing

    if store_missing(db_path) is None:
        from host_tools.collector import FleetDB

        db = FleetDB(db_path)
        try:
            for r in db.command_results():
                if r["ctr"] is not None:
                    results[(r["device_id"], r["ctr"])] = r
        finally:
            db.close()
    for s in sent:
        r = results.get((s["device"], s["ctr"]))
        s["result"] = r["result"] if r else "pending"
        s["reason"] = r["reason"] if r else None
    return sent
