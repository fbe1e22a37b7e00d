"""The cold-start console attack, automated (issue 10 item 1).

The review opened the REPL of a provisioned board with one Ctrl-C timed into
the ROM's flash mount after a cold power-on. Here every cold start is a real
power cycle of the board's VM by its supervisor, and the harness puts bytes on
the board's UART line at exact times after the power-up or a boot stage the
ROM reports (host_tools/sim/inject.py): Ctrl-C at every delay 0..50 ms in
0.5 ms steps, at each boot stage, and floods of Ctrl-C and random bytes. Each
Ctrl-C is followed by what an attacker types next - a line for the friendly
REPL and a raw-REPL block - both writing a marker file on the host. After
each cold start: no `>>>`, no raw REPL, no marker, exactly one boot (no
crash / boot loop), and the agent runs as the device."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from host_tools.pki import FleetPKI
from host_tools.provision import BrokerAddress, provision
from tests.e2e.sim_fixtures import sim_boards

BOARDS = ("pump-k1", "pump-k2")
WATCHDOG_MS = 3000
DELAYS = [i * 0.5 for i in range(101)]  # 0 .. 50 ms


def _payload(marker: Path) -> list[str]:
    code = f"open({str(marker)!r}, 'w').write('ran')"
    friendly = b"\r\n" + code.encode() + b"\r\n"
    raw = b"\x01" + code.encode() + b"\x04\x02"
    return [friendly.hex(), raw.hex()]


def _attack(marker: Path, on: str, at_ms: float) -> list[dict]:
    """Ctrl-C at `at_ms` after `on`, then the attacker's code 2 and 4 ms later
    (the flood test below keeps typing while the agent runs)."""
    friendly, raw = _payload(marker)
    return [{"on": on, "at_ms": at_ms, "hex": "03"},
            {"on": on, "at_ms": at_ms + 2, "hex": friendly},
            {"on": on, "at_ms": at_ms + 4, "hex": raw}]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    work = tmp_path_factory.mktemp("coldstart") / "work"
    pki = FleetPKI(work)
    pki.init()
    with sim_boards(work) as boards:
        for name in BOARDS:
            pki.issue(name, "pump-v2")
            # Provisioned: telemetry, signed commands and the login console run,
            # so the board gets 384 KiB like every provisioned board (README, heap).
            port = boards.start(name, model="pump-v2", heap="384k")["port"]
            provision(pki, name, port, BrokerAddress("127.0.0.1", 18883), config={"watchdog_ms": WATCHDOG_MS})
        for name in BOARDS:
            boards.wait_for(name, lambda s: (s.get("device") or {}).get("device_id") == name, 20, "provisioned agent")
        yield boards, work


def _running(name: str, boots: int, sends: int):
    def pred(s: dict) -> bool:
        dev = s.get("device") or {}
        return (s["boots"] > boots and s.get("injected", 0) >= sends and dev.get("device_id") == name
                and dev.get("state") == "running")
    return pred


def cold_start(boards, name: str, plan: list[dict], timeout: float = 20) -> dict:
    """Power-cycle the board with `plan` on its UART; the status once the agent
    runs as the device and every byte was sent; exactly one boot happened."""
    boots = boards.status(name)["boots"]
    boards.request(name, {"cmd": "power_cycle", "inject": plan})
    sends = sum(step.get("count", 1) for step in plan)
    st = boards.wait_for(name, _running(name, boots, sends), timeout, f"{name}'s agent after a cold start")
    assert st["boots"] == boots + 1, f"{name} rebooted {st['boots'] - boots} times: {st['resets']}"
    return st


def _mark(boards, name: str) -> tuple[int, dict]:
    """Where the console log and the reset counts stand before an attack."""
    return (boards.board_dir(name) / "console.log").stat().st_size, dict(boards.status(name)["resets"])


def _assert_console_closed(boards, name: str, marker: Path, before: tuple[int, dict]) -> None:
    """Since `before` (_mark): no REPL output, no marker, only power-on resets."""
    since, resets = before
    log = (boards.board_dir(name) / "console.log").read_bytes()[since:]
    assert log.count(b"[ROM] boot: power_on") >= 1
    assert b">>>" not in log and b"raw REPL" not in log and b"KeyboardInterrupt" not in log, log[-600:]
    assert not marker.exists(), "code typed at the UART ran on a provisioned board"
    now = boards.status(name)["resets"]
    grew = {k for k, v in now.items() if v != resets.get(k, 0)}
    assert grew == {"power_on"}, (resets, now)  # nothing crashed, nothing reset itself


def _run_plans(boards, work: Path, plans: list[tuple[str, float]]) -> float:
    """Spread (event, delay) attacks over the boards, one thread per board."""
    marker = work / "MARKER"
    since = {name: _mark(boards, name) for name in BOARDS}

    def worker(i: int) -> int:
        name = BOARDS[i]
        mine = plans[i::len(BOARDS)]
        for on, at in mine:
            cold_start(boards, name, _attack(marker, on, at))
        return len(mine)

    t0 = time.monotonic()
    with ThreadPoolExecutor(len(BOARDS)) as pool:
        assert sum(pool.map(worker, range(len(BOARDS)))) == len(plans)
    elapsed = time.monotonic() - t0
    for name in BOARDS:
        _assert_console_closed(boards, name, marker, since[name])
    return elapsed


def test_ctrl_c_at_every_delay_after_a_cold_start(fleet):
    boards, work = fleet
    elapsed = _run_plans(boards, work, [("spawn", d) for d in DELAYS])
    print(f"{len(DELAYS)} cold starts, Ctrl-C at 0..50 ms: {elapsed:.1f} s on {len(BOARDS)} boards")


def test_ctrl_c_at_each_boot_stage(fleet):
    # ROM entry, flash mount, loader start; the loader imports the app within
    # the first milliseconds after "loader", so the offsets cover the app import.
    boards, work = fleet
    plans = [(stage, at) for stage in ("rom", "mount", "loader") for at in (0, 0.5, 1, 2, 3, 5, 8, 12, 20, 35)]
    elapsed = _run_plans(boards, work, plans)
    print(f"{len(plans)} cold starts, Ctrl-C at each boot stage: {elapsed:.1f} s")


def test_uart_flood_from_power_on_never_stops_the_agent(fleet):
    boards, work = fleet
    marker = work / "MARKER"
    name = BOARDS[0]
    friendly, raw = _payload(marker)
    flood_s = 4.0
    plan = [{"on": "spawn", "at_ms": 0, "every_ms": 2, "count": int(flood_s * 500), "hex": "03"},
            {"on": "spawn", "at_ms": 1, "every_ms": 2, "count": int(flood_s * 500), "hex": "00" * 8, "random": True},
            {"on": "rom", "at_ms": 0, "every_ms": 0.5, "count": 2000, "hex": "03"},
            {"on": "spawn", "at_ms": 300, "every_ms": 500, "count": 8, "hex": friendly},
            {"on": "spawn", "at_ms": 550, "every_ms": 500, "count": 8, "hex": raw}]
    since = _mark(boards, name)
    t0 = time.monotonic()
    boots = boards.status(name)["boots"]
    boards.request(name, {"cmd": "power_cycle", "inject": plan})
    # up within one watchdog period of power-on, in spite of the flood
    st = boards.wait_for(name, lambda s: _running(name, boots, 0)(s) and s["device"].get("loops", 0) >= 1,
                         WATCHDOG_MS / 1000, "the agent under a UART flood")
    loops = st["device"]["loops"]
    # and it keeps running through the flood: no reset, the loop advancing
    sends = sum(p["count"] for p in plan)
    st = boards.wait_for(name, _running(name, boots, sends), flood_s + 10, "the flood sent")
    time.sleep(max(0.0, t0 + flood_s + 1 - time.monotonic()))
    st = boards.status(name)
    assert st["boots"] == boots + 1 and st["device"]["loops"] > loops
    _assert_console_closed(boards, name, marker, since)
