"""The simulated board, end to end: real MicroPython VMs, real ptys, real littlefs."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.sim.boards import BoardError
from host_tools.sim.image import ImageError
from host_tools.sim.uart import RemoteError, Uart, UartError
from tests.e2e.sim_fixtures import sim_boards


@pytest.fixture
def boards(tmp_path):
    with sim_boards(tmp_path / "work") as b:
        yield b


def _running(b, name, timeout=15.0):
    return b.wait_for(name, lambda s: (s.get("device") or {}).get("loops", 0) >= 1, timeout, "agent running")


def test_board_boots_app_from_slot_a_and_reports_status(boards):
    st = boards.start("pump-1")
    assert st["port"].startswith("/dev/pts/")
    st = _running(boards, "pump-1")
    dev = st["device"]
    assert dev["slot"] == "a" and dev["reset_reason"] == "power_on"
    assert set(dev["vitals"]) == {"hr", "spo2", "bp_sys", "bp_dia", "temp"}
    assert dev["heap_free"] < 256 * 1024


def test_heap_cap_enforced_on_the_board(boards):
    port = boards.start("b1", heap="128k")["port"]
    with Uart(port) as u:
        with pytest.raises(RemoteError) as e:
            u.exec("buf = bytearray(200 * 1024)")
        assert "MemoryError" in e.value.traceback
        # The same allocation fits a board with a bigger heap: the cap is what failed.
    boards.stop("b1")
    port = boards.start("b1", heap="512k")["port"]
    with Uart(port) as u:
        assert u.exec("buf = bytearray(200 * 1024); print(len(buf))").strip() == str(200 * 1024)


def test_files_on_flash_survive_reset(boards):
    port = boards.start("b2")["port"]
    with Uart(port) as u:
        u.exec("f = open('/data/note.txt', 'w'); f.write('kept across reset'); f.close()")
    # Counted from here: under CPU load, mpremote's double Ctrl-C can interrupt
    # the ROM's own KeyboardInterrupt handler on an open board, which then
    # reboots once (a sim limitation: /work/shared/NOTES.md, "Ctrl-C bursts").
    before = boards.status("b2")["boots"]
    boards.reset("b2")
    st = boards.wait_for("b2", lambda s: s.get("boots", 0) > before and s.get("last_reset_reason") == "reset"
                         and (s.get("device") or {}).get("loops", 0) >= 1, what="boot after the reset")
    assert st["last_reset_reason"] == "reset"
    with Uart(st["port"]) as u:
        assert u.exec("print(open('/data/note.txt').read())").strip() == "kept across reset"


def test_files_survive_stop_and_start(boards):
    port = boards.start("b3")["port"]
    with Uart(port) as u:
        u.exec("f = open('/state/x', 'w'); f.write('persist'); f.close()")
    boards.stop("b3")
    port = boards.start("b3")["port"]
    with Uart(port) as u:
        assert u.exec("print(open('/state/x').read())").strip() == "persist"


def test_mpremote_exec_against_running_board(boards):
    port = boards.start("b4")["port"]
    _running(boards, "b4")
    mpremote = Path(sys.executable).parent / "mpremote"
    proc = subprocess.run(
        [str(mpremote), "connect", port, "exec", "import os, sys; print(sys.implementation.name, sorted(os.listdir('/slot_a')))"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "micropython ['agent', 'manifest.json', 'slot.json', 'updater']" in proc.stdout


def test_watchdog_restarts_a_board_that_stops_feeding(boards):
    port = boards.start("b5")["port"]
    st = _running(boards, "b5")
    assert st["watchdog_ms"] > 0
    with Uart(port) as u:
        u.interrupt()  # Ctrl-C: the app stops, nothing feeds the watchdog any more
    st = boards.wait_for("b5", lambda s: s.get("resets", {}).get("watchdog", 0) >= 1
                         and (s.get("device") or {}).get("reset_reason") == "watchdog",
                         timeout=20, what="watchdog reset")
    assert st["boots"] == 2


def test_power_cut_at_a_flash_write_reboots_the_board(boards):
    port = boards.start("b6")["port"]
    _running(boards, "b6")
    boards.power_cut("b6", at_write=3)
    with Uart(port) as u, pytest.raises((UartError, RemoteError)):  # the board dies mid-command
        u.exec("for i in range(20):\n f = open('/data/f%d' % i, 'w'); f.write('x' * 300); f.close()", timeout=5)
    st = boards.wait_for("b6", lambda s: (s.get("device") or {}).get("reset_reason") == "power_cut",
                         what="reboot after power cut")
    assert st["resets"]["power_cut"] == 1


def test_unknown_board_name_is_a_clear_error(boards, tmp_path):
    with pytest.raises(BoardError, match="unknown board 'nope'"):
        boards.stop("nope")
    res = CliRunner().invoke(cli, ["--workdir", str(tmp_path / "work"), "sim", "reset", "nope"])
    assert res.exit_code == 1 and "unknown board 'nope'" in res.output
    with pytest.raises(BoardError, match="invalid board name"):
        boards.start("../evil")


def test_port_in_use(boards):
    port = boards.start("b7")["port"]
    with pytest.raises(BoardError, match="already running on"):
        boards.start("b7")
    with Uart(port):
        with pytest.raises(UartError, match="in use"):
            Uart(port)
        mpremote = Path(sys.executable).parent / "mpremote"
        proc = subprocess.run([str(mpremote), "connect", port, "exec", "print(1)"],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_corrupt_partition_table_is_refused_and_left_alone(boards):
    boards.start("b8")
    boards.stop("b8")
    img = boards.board_dir("b8") / "flash.img"
    data = bytearray(img.read_bytes())
    data[12] ^= 0xFF
    img.write_bytes(data)
    before = _sha(img)
    with pytest.raises(ImageError, match="partition table corrupt"):
        boards.start("b8")
    assert _sha(img) == before


def test_corrupt_littlefs_volume_halts_without_formatting(boards):
    boards.start("b9")
    boards.stop("b9")
    img = boards.board_dir("b9") / "flash.img"
    from board.sim import flash as simflash

    _, _, parts = simflash.unpack_table(img.read_bytes()[:4096])
    first = dict((n, f) for n, f, _ in parts)["state"]
    with open(img, "r+b") as f:  # scribble over both littlefs superblocks
        f.seek(first * 4096)
        f.write(b"\x5a" * 8192)
    before = _sha(img)
    with pytest.raises(BoardError, match=r"partition state is not a valid littlefs2 volume .*refusing to format"):
        boards.start("b9")
    assert _sha(img) == before
    assert boards.status("b9")["state"] == "halted"


def test_sim_cli_start_list_stop(tmp_path):
    work = str(tmp_path / "work")
    runner = CliRunner()
    try:
        res = runner.invoke(cli, ["--workdir", work, "sim", "start", "cli-1", "--heap", "192k"])
        assert res.exit_code == 0, res.output
        assert res.output.strip().startswith("/dev/pts/")
        res = runner.invoke(cli, ["--workdir", work, "sim", "list"])
        assert "cli-1" in res.output and "running" in res.output and "192k" in res.output
        res = runner.invoke(cli, ["--workdir", work, "sim", "power-cut", "cli-1", "--seed", "7", "--max-writes", "50"])
        assert res.exit_code == 0 and "armed at flash write" in res.output
        res = runner.invoke(cli, ["--workdir", work, "sim", "start", "cli-1", "--flash-size", "4M"])
        assert res.exit_code == 1 and "already running" in res.output
    finally:
        res = runner.invoke(cli, ["--workdir", work, "sim", "stop", "cli-1"])
    assert res.exit_code == 0
    res = runner.invoke(cli, ["--workdir", work, "sim", "start", "cli-1", "--flash-size", "4M"])
    assert res.exit_code == 1 and "cannot change" in res.output


def test_board_reaches_host_sockets_on_loopback(boards):
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(20)
    got = {}

    def serve():
        conn, _ = srv.accept()
        with conn:
            got["data"] = conn.recv(100)
            conn.sendall(b"pong")

    t = threading.Thread(target=serve)
    t.start()
    try:
        port = boards.start("net-1")["port"]
        code = (
            "import socket\n"
            f"s = socket.socket(); s.connect(socket.getaddrinfo('127.0.0.1', {srv.getsockname()[1]})[0][-1])\n"
            "s.send(b'ping'); print(s.recv(4)); s.close()"
        )
        with Uart(port) as u:
            assert u.exec(code).strip() == "b'pong'"
        t.join(10)
        assert got["data"] == b"ping"
    finally:
        srv.close()


def test_loader_boots_the_active_slot_deployed_as_mpy(boards, tmp_path):
    from host_tools.sim import build as simbuild
    from host_tools.sim import image as simimage

    port = boards.start("ab-1")["port"]
    # Booted first, so the test's boot state is the last written before the reset
    # (once in CI under load the fallback went unrecorded; the suspected cause, not
    # proven: a Ctrl-C landing in a slow first boot, before its own state write).
    boards.wait_for("ab-1", lambda s: (s.get("device") or {}).get("slot"), what="first boot")
    with Uart(port) as u:
        listing = u.exec("import os; print(sorted(os.listdir('/slot_a/agent')))")
        assert "'main.mpy'" in listing and ".py'" not in listing
        # Slot B is empty: asking for it falls back to A instead of bricking.
        u.exec("f = open('/state/boot.json', 'w'); f.write('{\"active\": \"b\"}'); f.close()")
    boards.reset("ab-1")
    st = boards.wait_for("ab-1", lambda s: s.get("boots") == 2 and (s.get("device") or {}).get("slot"), what="reboot")
    assert st["device"]["slot"] == "a"
    boards.stop("ab-1")
    assert st["device"]["boot_events"][-1]["type"] == "fallback"
    # Factory-install the app into slot B too and select it: now B boots.
    build = simbuild.build(boards.workdir)
    simimage.factory_program(boards.board_dir("ab-1") / "flash.img", build, format_all=False,
                             install={"slot_b": build.app},
                             files={"state/boot.json": '{"active": "b", "floor": 0, "trial": null, "events": []}'})
    boards.start("ab-1")
    st = boards.wait_for("ab-1", lambda s: (s.get("device") or {}).get("slot"), what="boot")
    assert st["device"]["slot"] == "b"


def test_factory_loader_boots_the_confirmed_slot_of_a_newer_boot_state(boards):
    # The loader in the flash loader partition (loader.mpy + bootstate.mpy,
    # never updated) meets a boot.json a newer app wrote in a format it does
    # not know: it boots the confirmed slot (not the trial), says so on the
    # UART, and leaves the file as it is.
    from host_tools.sim import build as simbuild
    from host_tools.sim import image as simimage

    boards.create("fmt-1")
    newer = '{"format": 99, "active": "a", "floor": 0, "trial": {"slot": "b", "attempts": 0}, "events": []}'
    build = simbuild.build(boards.workdir)
    simimage.factory_program(boards.board_dir("fmt-1") / "flash.img", build, format_all=False,
                             install={"slot_b": build.app}, files={"state/boot.json": newer})
    boards.start("fmt-1")
    st = _running(boards, "fmt-1")
    assert st["device"]["slot"] == "a" and not st["device"].get("trial")
    log = (boards.board_dir("fmt-1") / "console.log").read_text(errors="replace")
    assert "boot state format 99 is newer than this loader" in log and "trial boot" not in log
    with Uart(st["port"]) as u:
        assert u.exec("print(open('/state/boot.json').read())").strip() == newer


def test_a_crash_looping_board_is_halted_with_the_reason_from_its_console(boards):
    # 16 KiB cannot even run the ROM: every boot dies with MemoryError. Before,
    # the supervisor rebooted it for ever (77 boots in 15 s) and `sim start`
    # timed out saying nothing.
    with pytest.raises(BoardError) as e:
        boards.start("loop", heap="16k")
    assert "crash loop" in str(e.value) and "MemoryError" in str(e.value), e.value
    st = boards.status("loop")
    assert st["state"] == "halted" and st["boots"] == 5 and "MemoryError" in st["error"], st
    r = CliRunner().invoke(cli, ["--workdir", str(boards.root.parent), "sim", "list"])
    assert r.exit_code == 0 and "loop: halted: crash loop" in r.output, r.output


def test_sim_list_json_and_sim_rm(boards):
    work = str(boards.root.parent)
    boards.start("lst")
    _running(boards, "lst")
    r = CliRunner().invoke(cli, ["--workdir", work, "sim", "list", "--json"])
    assert r.exit_code == 0, r.output
    row = {x["board"]: x for x in json.loads(r.output)}["lst"]
    assert row["state"] == "running" and row["model"] == "pump-v2" and row["firmware"] == "1.0.0"
    assert row["provisioned"] is False and row["updates"] == "off" and row["port"].startswith("/dev/pts/")
    r = CliRunner().invoke(cli, ["--workdir", work, "sim", "rm", "lst"])
    assert r.exit_code == 1 and "is running" in r.output and boards.is_running("lst")
    r = CliRunner().invoke(cli, ["--workdir", work, "sim", "rm", "lst", "--force"])
    assert r.exit_code == 0 and "lst" not in boards.names(), r.output
    r = CliRunner().invoke(cli, ["--workdir", work, "sim", "rm", "lst"])
    assert r.exit_code == 1 and "unknown board" in r.output
