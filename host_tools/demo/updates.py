"""Demo stages for patches.

stage_release_server: release keys and model roles, the signed repository
    served over loopback HTTP (`repo serve`); hands the update configuration
    and the TUF root to later stages (ctx.shared["update_config"], ["tuf_root"]).
stage_updates: publishes new releases and watches the boards take them:
    pump-1 defers while it infuses, pump-2 loses power in the middle of its
    update and finishes after the reboot, monitor-1 gets a release that fails
    its health check and rolls back, then refuses one that needs a newer base.
    Writes `updates` into the summary: confirmed, rolled_back, deferred,
    rejected, power_cuts_survived.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from rich.live import Live
from rich.table import Table

from host_tools.demo.context import DemoContext
from host_tools.release.quickstart import DemoPassphrases, device_tree, ensure_models, publish_tree
from host_tools.release.serve import RepositoryServer
from host_tools.sim.uart import Uart

PASSPHRASES = DemoPassphrases("medsentry-demo")
MODELS = ("pump-v2", "monitor-v1")
SELFTEST = Path(__file__).resolve().parents[2] / "agent" / "selftest.py"
STAGE_TIMEOUT = 150.0


def bad_selftest() -> bytes:
    """agent/selftest.py with a regression its own health check catches."""
    return SELFTEST.read_bytes().replace(b'_SHA256_ABC = "ba78', b'_SHA256_ABC = "ba79')


def stage_release_server(ctx: DemoContext) -> None:
    work = ctx.workdir / "release"
    root = ensure_models(work, PASSPHRASES, MODELS)
    server = RepositoryServer(work / "repository").start()
    ctx.cleanup.append(server.stop)
    ctx.shared["release_work"] = work
    ctx.shared["tuf_root"] = root
    ctx.shared["update_config"] = {
        "update": {
            "metadata_url": server.url + "/metadata",
            "targets_url": server.url + "/targets",
            "check_every_s": 3,
            "trial_deadline_s": 15,
            "health_loops": 3,
        }
    }


def configure_unprovisioned(ctx: DemoContext, name: str) -> None:
    """Write the update configuration and TUF root over the UART (factory mode)."""
    port = ctx.boards.status(name)["port"]
    with Uart(port) as u:
        u.mkdir("/state/tuf")
        u.put_file("/state/tuf/root.json", Path(ctx.shared["tuf_root"]).read_bytes())
        u.put_file("/state/config.json", json.dumps(ctx.shared["update_config"]).encode())
    ctx.boards.reset(name)


def publish(ctx: DemoContext, model: str, version: str, counter: int, overrides: dict[str, bytes], **kw):
    tree = device_tree(ctx.workdir / "trees" / f"{model}-{version}", overrides)
    return publish_tree(ctx.shared["release_work"], PASSPHRASES, model, version, counter, tree, **kw)


def _table(ctx: DemoContext) -> Table:
    t = Table(title="medsentry demo: patches")
    for col in ("board", "fw", "slot", "pump", "update step", "detail", "last boot event"):
        t.add_column(col)
    for name in ctx.names:
        st = ctx.boards.status(name)
        dev = st.get("device") or {}
        upd = dev.get("update") or {}
        ev = (dev.get("boot_events") or [{}])[-1]
        detail = upd.get("reason") or ""
        if upd.get("step") == "downloading":
            detail = f"{upd.get('done')}/{upd.get('files')} files"
        t.add_row(name, f"{dev.get('version', '-')}{' (trial)' if dev.get('trial') else ''}", str(dev.get("slot", "-")),
                  (dev.get("pump") or {}).get("state", "-"), str(upd.get("step", "-")), detail[:60],
                  f"{ev.get('type', '-')} {ev.get('version', '')}")
    return t


def _history(ctx: DemoContext, name: str) -> list[dict]:
    return ctx.boards.status(name).get("update_history", [])


def stage_updates(ctx: DemoContext) -> None:
    if ctx.shared.get("provision") is None:
        # Boards that were not provisioned (their console is open) get the
        # update configuration over the UART; provisioned ones got it then.
        for name in ctx.names:
            configure_unprovisioned(ctx, name)
    # pump-1 infuses a short bolus: the update waits for its end.
    ctx.boards.start_infusion("pump-1", rate_ml_h=360.0, vtbi_ml=2.0)
    publish(ctx, "pump-v2", "1.1.0", 2, {"agent/release.txt": b"1.1.0: security fixes\n"})
    # pump-2 loses power during its update: the 60th flash write from now
    # (TUF metadata first, then the install) never lands.
    ctx.boards.power_cut("pump-2", at_write=60)
    publish(ctx, "monitor-v1", "1.1.0", 2, {"agent/selftest.py": bad_selftest()})
    cuts = 0
    rejected_published = False
    end = time.monotonic() + STAGE_TIMEOUT
    with Live(_table(ctx), console=ctx.console, refresh_per_second=4) as live:
        while time.monotonic() < end:
            time.sleep(0.25)
            live.update(_table(ctx))
            mon = ctx.boards.status("monitor-1").get("device") or {}
            rolled = any(e.get("type") == "rolled_back" for e in mon.get("boot_events", []))
            if rolled and not rejected_published:
                publish(ctx, "monitor-v1", "1.2.0", 3, {"agent/release.txt": b"1.2.0\n"}, min_base_version="1.1.0")
                rejected_published = True
            if _done(ctx, rejected_published):
                break
        live.update(_table(ctx))
    cuts = ctx.boards.status("pump-2").get("resets", {}).get("power_cut", 0)
    ctx.summary["updates"] = _counts(ctx, cuts)


def _done(ctx: DemoContext, rejected_published: bool) -> bool:
    ok = all(
        any(u.get("step") == "confirmed" for u in _history(ctx, n)) for n in ("pump-1", "pump-2")
    )
    # 1.2.0 refused for its base (1.1.0, which rolled back, is reported as
    # refused too, with its own reason).
    return ok and rejected_published and any(u.get("step") == "rejected" and u.get("version") == "1.2.0"
                                             for u in _history(ctx, "monitor-1"))


def _counts(ctx: DemoContext, cuts: int) -> dict:
    counts = {"confirmed": 0, "rolled_back": 0, "deferred": 0, "rejected": 0, "power_cuts_survived": 0}
    per_board = {}
    for name in ctx.names:
        st = ctx.boards.status(name)
        dev = st.get("device") or {}
        hist = st.get("update_history", [])
        confirmed = sum(1 for u in hist if u.get("step") == "confirmed")
        rolled = sum(1 for e in dev.get("boot_events", []) if e.get("type") == "rolled_back")
        deferred = sum(1 for u in hist if u.get("step") == "deferred")
        rejected = sum(1 for u in hist if u.get("step") == "rejected")
        counts["confirmed"] += confirmed
        counts["rolled_back"] += rolled
        counts["deferred"] += deferred
        counts["rejected"] += rejected
        per_board[name] = {"version": dev.get("version"), "slot": dev.get("slot"),
                           "steps": [u.get("step") for u in hist], "boot_events": dev.get("boot_events", [])}
    p2 = ctx.boards.status("pump-2")
    if cuts and any(u.get("step") == "confirmed" for u in p2.get("update_history", [])):
        counts["power_cuts_survived"] = cuts
    counts["boards"] = per_board
    return counts
