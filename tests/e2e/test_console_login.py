"""The maintenance console on a provisioned sim board, over its pty:
password + pyotp TOTP codes with the board clock moved by libfaketime (step
edges, +-1 window, replay), roles, the board clock unset, and a brute force
whose lockout holds across power cuts at every write of the counter update."""
from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pyotp
import pytest
from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.console import store
from host_tools.console.session import EXIT_DENIED, EXIT_LOGIN, ConsoleFailure, Session
from host_tools.pki import FleetPKI
from host_tools.provision import BoardLocked, BrokerAddress, provision
from host_tools.provision.repl import ReplSession
from host_tools.sim.uart import ConsoleLocked, Uart
from tests.e2e.sim_fixtures import sim_boards

_LIBS = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
pytestmark = pytest.mark.skipif(not _LIBS, reason="Debian faketime not installed")
BOARD = "pump-c1"
# A provisioned board runs telemetry, signed commands and the console: 384 KiB, as
# the demo and the other provisioned-board tests (README: heap; 256 KiB left the
# shell no room to load once the security agent landed).
HEAP = "384k"
PW = {"vera": "viewer-pass-1", "tom": "technician-pass-1", "ada": "admin-pass-12"}
ROLE = {"vera": "viewer", "tom": "technician", "ada": "admin"}


OFFSET = 10 * 86400  # the board's clock runs 10 days ahead (libfaketime)


class Fleet:
    def __init__(self, boards, work: Path):
        self.boards, self.work = boards, work
        self.secrets = {n: u["totp"] for n, u in store.load(work, "pump-v2").items()}
        self.used: dict[str, int] = {}  # per user, the latest TOTP step the board has accepted

    def note_used(self, name: str, board_time: float) -> None:
        self.used[name] = max(self.used.get(name, -1), int(board_time) // 30)

    def now(self) -> float:
        """The board's clock (libfaketime: real time + OFFSET)."""
        return time.time() + OFFSET

    def wait_phase(self, lo: float, hi: float) -> float:
        """Wait until the board clock is lo..hi s into a 30 s step; returns it."""
        while not lo <= self.now() % 30 < hi:
            time.sleep(0.2)
        return self.now()

    def next_code(self, name: str) -> str:
        """A code of a step the board has not accepted for this user (a used step is
        refused as a replay; steps are kept per user): the current step or the next
        one, which the board's +-1 step window takes. Waits only when both were used."""
        while True:
            cur = int(self.now()) // 30
            step = max(cur, self.used.get(name, -1) + 1)
            if step <= cur + 1:
                break
            time.sleep(0.2)
        self.used[name] = step
        return pyotp.TOTP(self.secrets[name]).at(step * 30)

    def port(self) -> str:
        return self.boards.status(BOARD)["port"]

    def login(self, name: str, password: str | None = None, code: str | None = None) -> Session:
        s = Session(self.port(), timeout=20)
        try:
            s.login(name, PW[name] if password is None else password, code or self.next_code(name))
        except BaseException:
            s.close()
            raise
        return s


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    work = tmp_path_factory.mktemp("console") / "work"
    for name in PW:
        store.add(work, "pump-v2", name, ROLE[name], PW[name])
    pki = FleetPKI(work)
    pki.init()
    pki.issue(BOARD, "pump-v2")
    env = {"LD_PRELOAD": _LIBS[0], "FAKETIME": f"+{OFFSET}"}
    saved = {k: os.environ.get(k) for k in env}
    with sim_boards(work) as boards:
        os.environ.update(env)
        try:
            port = boards.start(BOARD, model="pump-v2", heap=HEAP)["port"]
        finally:
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        provision(pki, BOARD, port, BrokerAddress("127.0.0.1", 18884),
                  accounts=lambda model: store.for_board(work, BOARD, model))
        boards.wait_for(BOARD, lambda s: (s.get("device") or {}).get("state") == "running", 30, "agent")
        yield Fleet(boards, work)


def test_login_with_totp_window_edges_and_replay(fleet):
    t = fleet.wait_phase(1, 6)  # early in a step: the previous step's code is still good
    prev = pyotp.TOTP(fleet.secrets["tom"]).at(t - 30)
    with fleet.login("tom", code=prev) as s:
        fleet.note_used("tom", t - 30)
        assert '"version": "1.0.0"' in s.run("version")
        s.logout()
    with pytest.raises(ConsoleFailure) as e:  # the same code again: a replay
        fleet.login("tom", code=prev).close()
    assert e.value.code == EXIT_LOGIN and "login incorrect" in str(e.value)
    time.sleep(2.5)  # the failure's delay
    t = fleet.wait_phase(22, 26)  # late in a step: the next step's code is good
    with fleet.login("vera", code=pyotp.TOTP(fleet.secrets["vera"]).at(t + 30)) as s:
        fleet.note_used("vera", t + 30)
        s.logout()
    with pytest.raises(ConsoleFailure):  # two steps away: refused
        fleet.login("ada", code=pyotp.TOTP(fleet.secrets["ada"]).at(fleet.now() + 60)).close()
    time.sleep(1.5)
    with pytest.raises(ConsoleFailure):  # right code, wrong password
        fleet.login("ada", password="admin-pass-13").close()
    time.sleep(2.5)
    with fleet.login("ada") as s:  # the two failures did not lock
        assert "unlocked ada" in s.run("unlock ada")
        s.logout()
    log = (fleet.boards.board_dir(BOARD) / "console.log").read_bytes()
    for pw in PW.values():
        assert pw.encode() not in log
    assert prev.encode() not in log


def test_roles_over_the_uart(fleet):
    def faults():
        r = fleet.boards.status(BOARD)["resets"]
        return r.get("crash", 0) + r.get("watchdog", 0)

    before = faults()
    with fleet.login("vera") as s:
        assert '"slot": "a"' in s.run("status")
        assert '"entries": ' in s.run("events")   # (crashed the agent once: a TypeError)
        with pytest.raises(ConsoleFailure) as e:
            s.run("selftest")
        assert e.value.code == EXIT_DENIED
        s.logout()
    with fleet.login("tom") as s:
        assert '"failures": null' in s.run("selftest")
        assert '"pending": ' in s.run("export-logs")
        with pytest.raises(ConsoleFailure) as e:
            s.run("users")
        assert e.value.code == EXIT_DENIED
        s.logout()
    assert faults() == before  # the agent ran on throughout (no crash, no watchdog reset)


def test_device_provision_fails_at_once_on_the_login_console(fleet):
    # Our tools read the login console's one-line answer to Ctrl-A and stop
    # there: well under a second, never their 10 s timeout.
    t0 = time.monotonic()
    with pytest.raises(BoardLocked, match="console locked: provisioned board"):
        with ReplSession(fleet.port(), timeout=10) as r:
            r.enter()
    assert time.monotonic() - t0 < 1
    t0 = time.monotonic()
    with Uart(fleet.port(), timeout=10) as u, pytest.raises(ConsoleLocked, match="no code runs here"):
        u.exec("print('should' + ' not run')")
    assert time.monotonic() - t0 < 1
    t0 = time.monotonic()
    res = CliRunner().invoke(cli, ["--workdir", str(fleet.work), "device", "provision", BOARD, "--port",
                                   fleet.port(), "--broker-port", "18884", "--timeout", "10"])
    assert res.exit_code != 0 and "console locked: provisioned board" in res.output, res.output
    assert time.monotonic() - t0 < 1
    assert b"should not run" not in (fleet.boards.board_dir(BOARD) / "console.log").read_bytes()


def test_mpremote_prints_the_reason_through_the_uart_link(fleet):
    # mpremote waits for the raw-REPL banner and ends its wait only at that
    # banner or at its own timeout; on a /dev/pts/ path its read has no timeout
    # at all (it would wait for ever). Through the board's UART link (the
    # name a serial adapter has) its 10 s timeout applies and it prints what
    # the board answered: the reason, and nothing ran.
    link = fleet.boards.status(BOARD)["uart_link"]
    assert os.path.realpath(link) == fleet.port()
    mpremote = Path(sys.executable).parent / "mpremote"
    t0 = time.monotonic()
    proc = subprocess.run([str(mpremote), "connect", link, "exec", "print('should' + ' not run')"],
                          capture_output=True, text=True, timeout=30)
    took = time.monotonic() - t0
    assert proc.returncode != 0
    assert "console locked: provisioned board, no code runs here" in proc.stdout, proc.stdout + proc.stderr
    assert "should not run" not in proc.stdout + proc.stderr
    assert took < 15  # mpremote's own 10 s raw-REPL timeout, not for ever
    assert b"should not run" not in (fleet.boards.board_dir(BOARD) / "console.log").read_bytes()


def test_fuzzed_line_editor_with_the_agent_running(fleet):
    """Long lines, control bytes and bursts of random bytes on the UART: the
    agent keeps running (no reset), nobody logs in, a real login still works."""
    import random

    rnd = random.Random(13)
    st0 = fleet.boards.status(BOARD)
    loops0 = st0["device"]["loops"]
    with Session(fleet.port(), timeout=20) as s:
        for i in range(60):
            kind = i % 4
            if kind == 0:
                data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 600)))
            elif kind == 1:
                data = b"A" * 3000 + b"\r"
            elif kind == 2:
                data = bytes(rnd.choice(b"\x00\x01\x02\x03\x04\x08\x1b\x7f\r\n[") for _ in range(200))
            else:
                data = b"tom\rtechnician-pass-1\r" + bytes(rnd.randrange(48, 58) for _ in range(6)) + b"\r"
            s.ser.write(data)
            time.sleep(0.05)
        time.sleep(2)
        out = s.ser.read(1 << 20)
    assert b"@medsentry$ " not in out
    st = fleet.boards.wait_for(BOARD, lambda x: x["device"].get("loops", 0) > loops0 + 3, 30, "agent loops")
    assert st["boots"] == st0["boots"] and st["device"]["state"] == "running"
    # A real login still works: vera, whom the noise never tried (tom's random
    # codes earned him delays).
    with fleet.login("vera") as s:
        s.logout()


def _heap_free(fleet) -> int:
    """The board's heap_free two status reports from now (the agent's gc.collect first)."""
    n = fleet.boards.status(BOARD)["device"]["loops"]
    st = fleet.boards.wait_for(BOARD, lambda x: (x.get("device") or {}).get("loops", 0) >= n + 2, 20, "status")
    return st["device"]["heap_free"]


def test_the_shell_is_released_when_the_session_ends(fleet):
    """The shell and its login code are on the heap only during a session: at
    logout they are released (agent.release_modules), so the heap a
    board has free for updates comes back. (It stayed ~24 KB lower for good.)"""
    with fleet.login("ada") as s:
        s.logout()
    released = _heap_free(fleet)  # after a first session (MicroPython keeps interned names)
    with fleet.login("tom") as s:
        s.run("version")
        in_session = _heap_free(fleet)
        s.logout()
    after = _heap_free(fleet)
    assert in_session < released - 10_000, (released, in_session)  # the shell was loaded
    assert after > released - 3_000, (released, in_session, after)  # and is gone again


def _guess(fleet, at: int | None) -> bytes:
    """One wrong guess for vera; with a power cut armed at flash write `at`
    from the moment the code is sent. Returns what the console answered."""
    with Session(fleet.port(), timeout=20) as s:
        s.ser.write(b"\x03")
        s._until(b"login: ")
        s._send("vera")
        s._until(b"password: ")
        s._send("wrong-guess")
        s._until(b"TOTP code: ")
        if at is not None:
            fleet.boards.power_cut(BOARD, at_write=at)
        s._send("123456")
        end = time.monotonic() + 4
        out = b""
        while time.monotonic() < end and b"login: " not in out:
            out += s.ser.read(512)
        return out


def _retry_after(out: bytes) -> int:
    m = re.search(rb"retry in (\d+) s", out)
    return int(m.group(1)) if m else 0


def test_brute_force_lockout_holds_across_power_cuts_at_every_write(fleet):
    answered = 0
    boots0 = fleet.boards.status(BOARD)["boots"]
    at = 1
    out = b""
    for _ in range(40):
        out = _guess(fleet, at if at <= 8 else None)
        if b"account locked" in out:
            break
        if b"login incorrect" in out:
            answered += 1
        elif b"account delayed" in out:
            time.sleep(_retry_after(out) + 0.5)
            continue
        if at <= 8:
            fleet.boards.wait_for(BOARD, lambda st: st["boots"] > boots0 + at - 1
                                  and (st.get("device") or {}).get("state") == "running", 60, "reboot")
        at += 1
    assert b"account locked" in out, out
    assert answered <= 5, f"{answered} guesses answered (at most 5 attempts before the lock)"
    assert fleet.boards.status(BOARD)["boots"] >= boots0 + 8  # the cuts happened
    with pytest.raises(ConsoleFailure) as e:  # the right credentials are refused now too
        fleet.login("vera").close()
    assert "locked" in str(e.value)
