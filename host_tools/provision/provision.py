"""`medsentry device provision`: write a device identity into a board's flash
over its UART, in factory mode only, then lock the raw REPL and reset the board."""
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

LOCK_FILE = "lock.json"  # board/sim/console.py LOCK_FILE, under the state partition
CONFIG_FILE = "config.json"
TUF_ROOT = "tuf/root.json"

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
_i["locked"] = _ex(_m["state"] + "/lock.json")
_i["identity"] = _ex(_m["state"] + "/identity.json")
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
    """The broker recorded by `medsentry broker run` (<workdir>/broker/address.json)."""
    path = Path(workdir) / "broker" / "address.json"
    try:
        d = json.loads(path.read_text())
        return BrokerAddress(str(d["host"]), int(d["port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def provision(pki: FleetPKI, device_id: str, port: str, broker: BrokerAddress, *,
              config: dict | None = None, tuf_root: bytes | None = None, reset: bool = True,
              timeout: float = 10.0, log: Callable[[str], None] | None = None) -> ProvisionResult:
    """Provision the board on serial ``port`` as ``device_id`` (issued by `pki issue`).

    Refuses a locked (already provisioned) board, a board whose active slot runs
    another model than the certificate names, and revoked/expired identities.
    Writes every file through a temp name with its SHA-256 checked on the board,
    identity.json after the files it names, lock.json last, then resets the board
    so the agent starts with its identity (``reset=False`` leaves it in the REPL).
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
        if info.get("locked"):
            raise BoardLocked(f"the board on {port} is provisioned and locked already ({state}/{LOCK_FILE})")
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
            say("an unfinished earlier provisioning is overwritten (identity.json present, no lock)")

        def put(rel: str, data: bytes) -> None:
            path = f"{state}/{rel}"
            s.put_file(path, data)
            result.written[path] = hashlib.sha256(data).hexdigest()
            say(f"wrote {path} ({len(data)} bytes, sha256 verified)")

        s.mkdir(f"{state}/{bundlemod.IDENTITY_DIR}")
        for rel, data in b.files.items():
            put(rel, data)
        if config is not None:
            old = s.read_file(f"{state}/{CONFIG_FILE}")
            base = bundlemod.load_config_file(old, f"{CONFIG_FILE} on the board") if old else {}
            put(CONFIG_FILE, json.dumps(bundlemod.merge_config(base, config), indent=1).encode())
        if tuf_root is not None:
            s.mkdir(f"{state}/tuf")
            put(TUF_ROOT, tuf_root)
        put("identity.json", json.dumps(b.identity, indent=1).encode())
        lock = {"locked": True, "device_id": device_id, "at": b.identity["provisioned_at"],
                "reason": "factory provisioning done"}
        put(LOCK_FILE, json.dumps(lock).encode())
        if reset:
            s.reset()
            result.reset = True
            say("board reset: it boots with its identity")
    return result
