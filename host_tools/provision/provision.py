"""`medsentry device provision`: write a device identity into a board's flash
over its UART, in factory mode only, then lock the console and reset the board.

One commit: every file is written first (secrets sealed on the board), then the
board's console lock fuse is programmed. A power cut before the fuse leaves an
uncommitted identity that the board's ROM removes at the next boot (unprovisioned,
console open); after it the board is provisioned and locked. Never both."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from host_tools.pki import FleetPKI

from . import bundle as bundlemod
from .bundle import BrokerAddress
from .errors import BoardLocked, ModelMismatch, ProvisionError
from .repl import ReplSession

CONFIG_FILE = "config.json"
TUF_ROOT = "tuf/root.json"
UPDATE_CA = "tuf/server-ca.pem"  # the update server's CA (`repo serve --tls`), config update.ca

# Runs on the board: where flash is mounted, whether it is locked or provisioned,
# and which model its active slot runs.
_PROBE = """_m = board.mounts()
_i = {"mounts": _m}
def _ex(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False
_i["lock"] = board.lock_state()
_i["notes"] = getattr(board, "boot_notes", [])
_i["identity"] = _ex(_m["state"] + "/identity.json") or _ex(_m["state"] + "/identity")
try:
    _i["active"] = json.loads(open(_m["state"] + "/boot.json").read()).get("active", "a")
except (OSError, ValueError):
    _i["active"] = "a"
try:
    _i["slot"] = json.loads(open(_m["slot_" + _i["active"]] + "/slot.json").read())
except (OSError, ValueError, KeyError):
    _i["slot"] = None
print(json.dumps(_i))
"""


# Runs on the board: seal a secret under the device key with the agent's own
# keystore (from the active slot) and return the blob; the plaintext stays in RAM.
_SEAL = """import sys
if {slot!r} not in sys.path:
    sys.path.insert(0, {slot!r})
from agent import keystore as _ks
_p = binascii.unhexlify({hex!r})
_b = _ks.seal(board.device_key(), {name!r}, _p)
if _ks.unseal(board.device_key(), {name!r}, _b) != _p:
    raise ValueError("sealed secret does not open")
_p = None
print(binascii.hexlify(_b).decode())
"""
# Runs on the board: the console accounts (host_tools/console/store.py records),
# each password verifier and TOTP key sealed under the device key by the agent's
# own code (agent/console/accounts.py) before the file reaches flash.
_ACCOUNTS = """import sys
if {slot!r} not in sys.path:
    sys.path.insert(0, {slot!r})
from agent.console import auth as _ac
_u = {{}}
for _r in json.loads({js!r}):
    _h = binascii.unhexlify
    _u[_r["name"]] = _ac.make_record(board.device_key(), _r["name"], _r["role"], _h(_r["salt"]),
                                     _r["iter"], _h(_r["verifier"]), _h(_r["totp"]))
_r = None
try:
    os.mkdir({state!r} + "/console")
except OSError:
    pass
_ac.save({state!r}, _u)
print(len(_u))
"""
# Runs on the board: program the console lock fuse (the commit) and read it back.
_COMMIT = """board.lock_console()
print(json.dumps(board.lock_state()))
"""


def board_state(info: dict) -> str:
    """One line saying which state a probed board is in."""
    if info.get("lock") != "open":
        return f"provisioned and locked (lock fuse: {info.get('lock')})"
    if info.get("identity"):
        return "unprovisioned: console open, identity files of an uncommitted provisioning present"
    notes = "; ".join(info.get("notes") or [])
    return "unprovisioned: console open, no identity" + (f" ({notes} at the last boot)" if notes else "")


@dataclass
class ProvisionResult:
    device_id: str
    model: str
    port: str
    state_dir: str
    written: dict[str, str] = field(default_factory=dict)  # board path -> sha256
    reprovisioned: bool = False  # an earlier, unfinished provisioning was overwritten
    reset: bool = False


def broker_from_workdir(workdir: str | Path) -> BrokerAddress | None:
    """The broker recorded by `medsentry broker run` (<workdir>/broker/address.json),
    with every node's MQTT endpoint when it is a cluster (``--cluster N``)."""
    path = Path(workdir) / "broker" / "address.json"
    try:
        d = json.loads(path.read_text())
        eps = tuple((str(h), int(p)) for h, p in d.get("mqtt") or ())
        return BrokerAddress(str(d["host"]), int(d["port"]), endpoints=eps if len(eps) > 1 else ())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def provision(pki: FleetPKI, device_id: str, port: str, broker: BrokerAddress, *,
              config: dict | None = None, tuf_root: bytes | None = None, update_ca: bytes | None = None,
              reset: bool = True,
              timeout: float = 10.0,
              accounts: Callable[[str], list[dict]] | None = None, log: Callable[[str], None] | None = None) -> ProvisionResult:
    """Provision the board on serial ``port`` as ``device_id`` (issued by `pki issue`).

    Refuses a locked (already provisioned) board, a board whose active slot runs
    another model than the certificate names, and revoked/expired identities.
    Writes every file through a temp name with its SHA-256 checked on the board,
    the private key and the telemetry key sealed on the board under its device
    key, identity.json after the files it names; then programs the console lock
    fuse (the commit) and resets the board so the agent starts with its identity
    (``reset=False`` leaves it at its locked console).
    """
    say = log or (lambda msg: None)
    b = bundlemod.build_bundle(pki, device_id, broker)
    if config is not None and not isinstance(config, dict):
        raise ProvisionError("the configuration must be a JSON object")
    if tuf_root is not None:
        bundlemod.check_tuf_root(tuf_root, "the TUF root")
    with ReplSession(port, timeout=timeout) as s:
        info = s.run_json(_PROBE)
        assert isinstance(info, dict)
        mounts = info.get("mounts") or {}
        state = mounts.get("state")
        if not state:
            raise ProvisionError(f"the board on {port} has no state partition mounted: {mounts}")
        say(f"board state: {board_state(info)}")
        if info.get("lock") != "open":
            raise BoardLocked(f"the board on {port} is {board_state(info)}: provisioned already")
        slot = info.get("slot") or {}
        board_model = slot.get("model")
        if board_model is None:
            raise ProvisionError(f"the board on {port} has no firmware in its active slot "
                                 f"{info.get('active')!r}: cannot tell its model")
        if board_model != b.model:
            raise ModelMismatch(f"{device_id} was issued for model {b.model!r} but the board on {port} runs "
                                f"{board_model!r} firmware (slot {info.get('active')}); issue an identity for "
                                f"{board_model!r} or use the right board")
        result = ProvisionResult(device_id=device_id, model=b.model, port=port, state_dir=state,
                                 reprovisioned=bool(info.get("identity")))
        if result.reprovisioned:
            say("restarting: the uncommitted identity files are overwritten")
        slot_dir = mounts.get("slot_" + str(info.get("active")))

        def put(rel: str, data: bytes) -> None:
            path = f"{state}/{rel}"
            s.put_file(path, data)
            result.written[path] = hashlib.sha256(data).hexdigest()
            say(f"wrote {path} ({len(data)} bytes, sha256 verified)")

        def sealed(name: str) -> bytes:
            out = s.run(_SEAL.format(slot=slot_dir, hex=b.secrets[name].hex(), name=name)).strip()
            try:
                return bytes.fromhex(out.splitlines()[-1])
            except (ValueError, IndexError):
                raise ProvisionError(f"the board did not seal {name}: {out[-200:]!r}") from None

        s.mkdir(f"{state}/{bundlemod.IDENTITY_DIR}")
        for rel, data in b.files.items():
            put(rel, data)
        put(bundlemod.FILES["key"], sealed(bundlemod.TLS_KEY))
        identity = dict(b.identity, telemetry=dict(b.identity["telemetry"],
                                                   sealed_key=sealed(bundlemod.TELEMETRY_KEY).hex()))
        if config is not None:
            old = s.read_file(f"{state}/{CONFIG_FILE}")
            base = bundlemod.load_config_file(old, f"{CONFIG_FILE} on the board") if old else {}
            put(CONFIG_FILE, json.dumps(bundlemod.merge_config(base, config), indent=1).encode())
        if tuf_root is not None or update_ca is not None:
            s.mkdir(f"{state}/tuf")
        if tuf_root is not None:
            put(TUF_ROOT, tuf_root)
        if update_ca is not None:
            put(UPDATE_CA, update_ca)
        users = accounts(b.model) if accounts is not None else []
        if users:
            out = s.run(_ACCOUNTS.format(slot=slot_dir, state=state, js=json.dumps(users))).strip()
            if out.splitlines()[-1:] != [str(len(users))]:
                raise ProvisionError(f"the board did not store the console accounts: {out[-200:]!r}")
            say(f"console accounts sealed on the board: {len(users)}")
        put("identity.json", json.dumps(identity, indent=1).encode())
        lock = s.run_json(_COMMIT)
        if lock != "locked":
            raise ProvisionError(f"the board's lock fuse did not program (lock state {lock!r}); "
                                 "the identity is not committed: the board removes it at its next boot")
        say("console lock fuse programmed: provisioning committed")
        if reset:
            s.reset()
            result.reset = True
            say("board reset: it boots with its identity")
    return result
