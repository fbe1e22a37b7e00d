"""`medsentry device provision` against real simulated boards over their UART
(pyserial, raw REPL): model mismatch refused before anything is written, the
identity written and verified, the console locked (raw REPL refused: Uart and
a second provisioning fail cleanly), the board rebooting into its identity;
unprovisioned boards keep their raw REPL."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from host_tools.cli.main import cli
from host_tools.pki import FleetPKI
from host_tools.provision import BoardLocked, BrokerAddress, ModelMismatch, provision
from host_tools.sim.uart import RemoteError, Uart, UartError
from tests.e2e.sim_fixtures import sim_boards


@pytest.fixture
def env(tmp_path):
    work = tmp_path / "work"
    pki = FleetPKI(work)
    pki.init()
    pki.issue("pump-p1", "pump-v2")
    pki.issue("mon-x1", "monitor-v1")
    with sim_boards(work) as boards:
        yield work, pki, boards


def test_provision_locks_the_console_and_refuses_a_second_time(env, tmp_path):
    work, pki, boards = env
    port = boards.start("pump-p1", model="pump-v2")["port"]
    broker = BrokerAddress("127.0.0.1", 18883)

    # a monitor identity on a pump board: refused before anything is written
    with pytest.raises(ModelMismatch, match="monitor-v1.*pump-v2"):
        provision(pki, "mon-x1", port, broker, reset=False)
    with Uart(port) as u:  # still unlocked, nothing written
        names = u.exec("import os\nprint(os.listdir('/state'))")
        assert "identity" not in names and "lock.json" not in names

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"telemetry": {"period_ms": 500}, "watchdog_ms": 8000}))
    res = CliRunner().invoke(cli, ["--workdir", str(work), "device", "provision", "pump-p1", "--port", port,
                                   "--broker-port", "18883", "--config", str(cfg), "--no-reset"])
    assert res.exit_code == 0, res.output
    assert "raw REPL locked" in res.output

    # locked: the raw REPL runs nothing and says why
    with Uart(port, timeout=3) as u:
        u.ser.write(b"\r\x03\x03")
        time.sleep(0.1)
        u.ser.reset_input_buffer()
        u.ser.write(b"\r\x01")
        assert u.read_until(b"console locked: raw REPL disabled", timeout=3)
        u.exit_raw_repl()
    with Uart(port, timeout=5) as u:
        with pytest.raises(RemoteError, match="console locked"):
            u.exec("print('should not run')")
    # mpremote fails at once with the same message (no code runs)
    mpremote = Path(sys.executable).parent / "mpremote"
    proc = subprocess.run([str(mpremote), "connect", port, "exec", "print('should' + ' not run')"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "console locked" in proc.stdout + proc.stderr
    assert "should not run" not in proc.stdout

    # a second provisioning is refused, library and CLI
    with pytest.raises(BoardLocked, match="locked"):
        provision(pki, "pump-p1", port, broker, timeout=3)
    res = CliRunner().invoke(cli, ["--workdir", str(work), "device", "provision", "pump-p1", "--port", port,
                                   "--broker-port", "18883", "--timeout", "3"])
    assert res.exit_code != 0 and "locked" in res.output and "provisioned already" in res.output

    # the board boots with its identity (no broker here: it queues and keeps retrying)
    boards.reset("pump-p1")
    st = boards.wait_for("pump-p1", lambda s: ((s.get("device") or {}).get("telemetry") or {}).get("sampled", 0) >= 2,
                         20, "telemetry sampling")
    dev = st["device"]
    assert dev["device_id"] == "pump-p1"
    assert dev["telemetry"]["connected"] is False and dev["telemetry"]["queued"] >= 2
    assert dev["telemetry"]["queue_capacity"] == 512 * 1024  # fits the 2 MiB board's data partition
    # still locked after the reboot: Ctrl-C no longer stops the running agent,
    # so the UART does not even offer a REPL, and the agent keeps running
    with Uart(st["port"], timeout=3) as u:
        with pytest.raises((RemoteError, UartError)):
            u.exec("print(1)")
    loops = boards.status("pump-p1")["device"]["loops"]
    boards.wait_for("pump-p1", lambda s: (s.get("device") or {}).get("loops", 0) > loops + 2, 15,
                    "the agent keeps running after the refused REPL")


def test_small_flash_caps_the_queue_and_unprovisioned_boards_keep_the_raw_repl(env):
    work, pki, boards = env
    port = boards.start("pump-p1", model="pump-v2", flash_size="1M")["port"]
    with Uart(port) as u:  # unprovisioned: raw REPL as before
        assert u.exec("print(6 * 7)").strip() == "42"
    provision(pki, "pump-p1", port, BrokerAddress("127.0.0.1", 18883))
    st = boards.wait_for("pump-p1", lambda s: ((s.get("device") or {}).get("telemetry") or {}).get("sampled", 0) >= 1,
                         20, "telemetry sampling")
    cap = st["device"]["telemetry"]["queue_capacity"]
    assert 32 * 1024 <= cap < 512 * 1024 and cap % (16 * 1024) == 0  # capped to the data partition
