"""The raw-REPL client on mpremote's SerialTransport (host_tools/sim/uart.py):
mpremote's soft reset on the simulated board's pty, and the thin layer kept on
top of it - a silent port, a board that reboots while we wait and a locked
console are each reported at once, where mpremote alone waits (for ever on a
silent pty)."""
from __future__ import annotations

import os
import threading
import time

import pytest
from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

from host_tools.provision import BoardLocked, ReplSession
from host_tools.sim.uart import BoardRebooted, ConsoleLocked, RemoteError, Uart, UartError
from tests.e2e.sim_fixtures import sim_boards


@pytest.fixture
def boards(tmp_path):
    with sim_boards(tmp_path / "work") as b:
        yield b


def _running(b, name):
    return b.wait_for(name, lambda s: (s.get("device") or {}).get("loops", 0) >= 1, 15, "agent running")


def test_a_silent_port_fails_within_the_timeout_where_mpremote_alone_hangs():
    # A port nobody answers on (a board without power behind its UART adapter).
    master, slave = os.openpty()
    port = os.ttyname(slave)
    t0 = time.monotonic()
    with pytest.raises(UartError, match="did not answer"):
        with Uart(port, timeout=1.5) as u:
            u.exec("print(1)")
    assert time.monotonic() - t0 < 4
    # mpremote's own transport on the same port: its read(1) on a pty has no
    # timeout, so entering the raw REPL never returns (until a hang-up).
    t = SerialTransport(port)
    done = threading.Event()

    def enter():
        try:
            t.enter_raw_repl(soft_reset=False, timeout_overall=1)
        except (TransportError, OSError):
            pass  # the hang-up below ends the read
        done.set()

    th = threading.Thread(target=enter, daemon=True)
    th.start()
    try:
        assert not done.wait(4), "mpremote returned on a silent pty: the bounded layer may no longer be needed"
    finally:
        os.close(master)  # hang-up: the blocked read ends
        th.join(5)
        t.serial.close()
        os.close(slave)
    assert done.is_set()


def test_soft_reset_through_mpremote_restarts_the_vm_into_the_raw_repl(boards):
    port = boards.start("sr-1")["port"]
    _running(boards, "sr-1")
    boots = boards.status("sr-1")["boots"]
    with Uart(port) as u:
        u.exec("kept = 42")
        assert u.exec("print(kept)").strip() == "42"
        u.enter_raw_repl(soft_reset=True)
        out, err = u.exec_raw("print('kept' in globals())")
        u.exit_raw_repl()
    assert (out.strip(), err) == ("False", "")
    st = boards.status("sr-1")
    assert st["boots"] == boots + 1 and st["last_reset_reason"] == "soft"


def test_a_board_that_reboots_while_we_wait_is_reported_at_once(boards):
    port = boards.start("rb-1")["port"]
    _running(boards, "rb-1")
    boards.power_cut("rb-1", at_write=2)
    t0 = time.monotonic()
    with Uart(port, timeout=30) as u, pytest.raises(BoardRebooted):
        u.exec("for i in range(20):\n f = open('/data/f%d' % i, 'w'); f.write('x' * 300); f.close()")
    assert time.monotonic() - t0 < 10  # not the 30 s timeout


def test_a_locked_console_is_refused_at_once(boards):
    port = boards.start("lk-1")["port"]
    _running(boards, "lk-1")
    with Uart(port) as u:
        u.exec("board.lock_console()")  # what provisioning's commit does
    t0 = time.monotonic()
    with Uart(port, timeout=30) as u, pytest.raises(ConsoleLocked, match="console locked") as e:
        u.exec("print('should' + ' not run')")
    assert isinstance(e.value, RemoteError) and isinstance(e.value, UartError)
    with pytest.raises(BoardLocked, match="provisioned already"):
        with ReplSession(port, timeout=30):
            pass
    assert time.monotonic() - t0 < 10  # neither waited for its 30 s timeout
    log = (boards.board_dir("lk-1") / "console.log").read_bytes()
    assert b"should not run" not in log
