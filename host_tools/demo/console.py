"""Demo stages of the maintenance console: a technician account for the pump
model (sealed on each pump at provisioning), then on pump-1 a login with
password + TOTP, the version read, and wrong codes locking the account."""
from __future__ import annotations

import re
import time

import pyotp

from host_tools.console import store
from host_tools.console.session import ConsoleFailure, Session
from host_tools.demo.context import DEMO_BOARDS, DemoContext

USER, PASSWORD, MODEL = "tech1", "demo-technician-pw", "pump-v2"


def stage_accounts(ctx: DemoContext) -> None:
    """Enrol a technician for every pump-v2 board (before provisioning)."""
    e = store.add(ctx.workdir, MODEL, USER, "technician", PASSWORD)
    ctx.shared["console_totp"] = e.secret
    png = ctx.out / f"console-{USER}.png"
    store.write_qr(e.uri, png)
    ctx.console.print(f"[bold]console[/] account {USER} (technician) for {MODEL}; authenticator QR -> {png}")


def _login(port: str, code: str) -> tuple[bool, str]:
    with Session(port, timeout=20) as s:
        try:
            s.login(USER, PASSWORD, code)
        except ConsoleFailure as e:
            return False, str(e)
        version = s.run("version")
        s.logout()
        return True, version


def stage_console(ctx: DemoContext) -> None:
    """Log the technician into the first pump, read the version, then lock the
    account with wrong codes."""
    name = next(n for n in ctx.names if DEMO_BOARDS[n] == MODEL)
    ctx.boards.wait_for(name, lambda s: (s.get("device") or {}).get("state") == "running", 60, "agent")
    port = ctx.boards.status(name)["port"]
    ok, answer = _login(port, pyotp.TOTP(ctx.shared["console_totp"]).now())
    ctx.console.print(f"[bold]console[/] {USER}@{name}: password + TOTP -> "
                      + (f"logged in, version {answer}" if ok else f"refused: {answer}"))
    locked = False
    for _ in range(12):
        good, msg = _login(port, "000000")
        m = re.search(r"retry in (\d+) s", msg)
        if "account locked" in msg:
            locked = True
            ctx.console.print(f"[bold]console[/] wrong code: {msg.splitlines()[0]}")
            break
        if m:
            time.sleep(int(m.group(1)) + 0.5)
        else:
            ctx.console.print(f"[bold]console[/] wrong code: {msg.splitlines()[0]}")
    # the board's own counters (its status, written once a second)
    dev = ctx.boards.wait_for(name, lambda s: ((s.get("device") or {}).get("console") or {}).get("lockouts", 0)
                              >= int(locked), 15, "console counters")["device"]
    stats = dev["console"]
    ctx.summary["console"] = {"board": name, "logins_ok": int(ok), "logins_failed": stats["failed_logins"],
                              "lockouts": stats["lockouts"], "locked_accounts": stats["locked_accounts"],
                              "locked_by_demo": locked}
