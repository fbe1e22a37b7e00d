"""Robot Framework library: Renode's keywords on the simulated board.

The suites in renode/tests are written for Renode (`Resource ${RENODEKEYWORDS}`,
Renode's keyword names and arguments). Where Renode is not installed,
renode/keywords/sim.resource stands in for renode-keywords.robot and loads
this library, which does what each keyword does in Renode, on a board of
host_tools.sim (a real MicroPython VM on a littlefs flash image, pty UART,
reset line and power-cut injection). Nothing here talks to Renode; a run
with this library is a run on the simulated board, and says so in its log.

Renode keywords implemented (semantics as in Renode's RobotFrameworkEngine):
  Setup, Teardown, Test Teardown, Reset Emulation,
  Execute Command (monitor commands: `mach create [name]`, `mach set name`,
  `machine Reset`), Create Terminal Tester, Start Emulation,
  Wait For Line On Uart, Wait For Prompt On Uart, Write Line To Uart,
  Write Char On Uart, Should Not Be On Uart, Set Default Uart Timeout.
Board keywords (ours; renode/keywords/renode_board.resource says what they
need on Renode): Create Board (resource), Cut Power, Arm Power Cut At Flash Write,
Configure Board For Updates, Board Status Should Be.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import serial
from robot.api import logger
from robot.libraries.BuiltIn import BuiltIn

from host_tools.sim.boards import BoardError, Boards
from host_tools.sim.uart import Uart

from uart_tester import UartTester

DEFAULT_TIMEOUT = 8.0  # Renode's default terminal tester timeout (seconds)
WRITE_CHAR_DELAY = 0.002


def _flag(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


class SimBoardRenode:
    ROBOT_LIBRARY_SCOPE = "GLOBAL"

    def __init__(self) -> None:
        self.boards: Boards | None = None
        self.machines: list[str] = []
        self.current: str | None = None
        self.testers: list[tuple[str, UartTester]] = []
        self.default_timeout = DEFAULT_TIMEOUT
        self.started = False

    # -- suite / test lifecycle (renode-keywords.robot) ---------------------------------
    def setup(self) -> None:
        """Suite setup: a fresh work directory under the output folder."""
        out = Path(BuiltIn().get_variable_value("${OUTPUT DIR}"))
        suite = re.sub(r"[^A-Za-z0-9_-]+", "_", BuiltIn().get_variable_value("${SUITE NAME}"))
        work = out / "sim-work" / suite
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        self.boards = Boards(work)
        logger.info(f"Backend: simulated board (host_tools.sim), work directory {work}; this is not a Renode run")

    def teardown(self) -> None:
        self._stop_all()

    def test_teardown(self) -> None:
        """Attach each machine's UART log to the test log, then stop the machines."""
        for name in self.machines:
            log = self._boards().board_dir(name) / "console.log"
            if log.exists():
                logger.info(f"UART of {name}:\n" + log.read_text(errors="replace")[-4000:])
        self._stop_all()

    def reset_emulation(self) -> None:
        """Remove every machine (its flash, fuses and UART log go with it)."""
        self._stop_all()
        for name in self.machines:
            shutil.rmtree(self._boards().board_dir(name), ignore_errors=True)
        self.machines, self.current, self.testers, self.started = [], None, [], False

    # -- the monitor ----------------------------------------------------------------------
    def execute_command(self, command: str, machine: str | None = None) -> str:
        """A Renode monitor command; the subset the simulated board has."""
        words = command.split()
        if words[:2] == ["mach", "create"]:
            name = words[2].strip('"') if len(words) > 2 else f"machine-{len(self.machines)}"
            self._boards().board_dir(name)  # validates the name
            self.machines.append(name)
            self.current = name
            return ""
        if words[:2] == ["mach", "set"] and len(words) == 3:
            self.current = self._machine(words[2].strip('"'))
            return ""
        if words == ["machine", "Reset"]:
            self._boards().reset(self._machine(machine))
            return ""
        raise AssertionError(f"monitor command {command!r} is not available on the simulated board "
                             "(it has: mach create, mach set, machine Reset)")

    def start_emulation(self) -> None:
        for name in self.machines:
            if not self._boards().is_running(name):
                self._boards().start(name)
        self.started = True

    # -- UART --------------------------------------------------------------------------------
    def set_default_uart_timeout(self, timeout) -> None:
        self.default_timeout = float(timeout)

    def create_terminal_tester(self, uart: str, timeout=None, machine: str | None = None,
                               defaultPauseEmulation=False) -> int:
        name = self._machine(machine)
        log = self._boards().board_dir(name) / "console.log"
        limit = self.default_timeout if timeout is None else float(timeout)
        self.testers.append((name, UartTester(log, limit)))
        logger.info(f"terminal tester {len(self.testers) - 1} on {uart} of {name} (the board's UART)")
        return len(self.testers) - 1

    def wait_for_line_on_uart(self, content: str, timeout=None, testerId=None, treatAsRegex=False,
                              pauseEmulation=False) -> dict:
        return self._tester(testerId).wait_for_line(content, timeout, _flag(treatAsRegex))

    def wait_for_prompt_on_uart(self, prompt: str, timeout=None, testerId=None, treatAsRegex=False,
                                pauseEmulation=False) -> dict:
        return self._tester(testerId).wait_for_prompt(prompt, timeout, _flag(treatAsRegex))

    def should_not_be_on_uart(self, content: str, timeout=None, testerId=None, treatAsRegex=False) -> None:
        tester = self._tester(testerId)
        tester.should_not_be_on_uart(content, tester.timeout if timeout is None else float(timeout),
                                     _flag(treatAsRegex))

    def write_line_to_uart(self, content: str = "", testerId=None, waitForEcho=True) -> None:
        self._write(testerId, content.encode() + b"\r")
        if _flag(waitForEcho) and content:
            self._tester(testerId).wait_for_line(content)

    def write_char_on_uart(self, char: str, testerId=None) -> None:
        if len(char) != 1:
            raise AssertionError(f"Write Char On Uart takes one character, got {char!r}")
        self._write(testerId, char.encode("latin-1"))

    # -- board keywords (not Renode's) ------------------------------------------------------
    def cut_power(self, machine: str | None = None) -> None:
        """Power fails now: the VM dies mid-instruction; the board powers up again."""
        self._boards().power_cut(self._machine(machine))

    def arm_power_cut_at_flash_write(self, write, machine: str | None = None) -> None:
        """Power fails at the Nth flash write from now (counted by the flash driver)."""
        self._boards().power_cut(self._machine(machine), at_write=int(write))

    def configure_board_for_updates(self, trial_deadline_s=20, machine: str | None = None) -> None:
        """Factory step over the UART's raw REPL (an open board only): the update
        repository's root.json and URLs (UpdateRepo), then a reset."""
        name = self._machine(machine)
        anchor = BuiltIn().get_library_instance("UpdateRepo").update_trust_anchor()
        cfg = {"update": {"metadata_url": anchor["metadata_url"], "targets_url": anchor["targets_url"],
                          "check_every_s": 2, "trial_deadline_s": int(trial_deadline_s), "health_loops": 3}}
        with Uart(self._boards().status(name)["port"]) as u:
            u.mkdir("/state/tuf")
            u.put_file("/state/tuf/root.json", anchor["root"])
            u.put_file("/state/config.json", json.dumps(cfg).encode())
        self._boards().reset(name)

    def board_status_should_be(self, key: str, expected, machine: str | None = None) -> None:
        """A value of the status the supervisor records (e.g. last_reset_reason, boots)."""
        st = self._boards().status(self._machine(machine))
        got = st.get(key)
        if str(got) != str(expected):
            raise AssertionError(f"board status {key} is {got!r}, expected {expected!r}")

    # -- helpers ----------------------------------------------------------------------------
    def _boards(self) -> Boards:
        if self.boards is None:
            raise AssertionError("Setup was not run (Suite Setup  Setup)")
        return self.boards

    def _machine(self, name: str | None) -> str:
        name = name or self.current
        if name is None or name not in self.machines:
            raise AssertionError(f"no machine {name!r} (create one with: Execute Command  mach create)")
        return name

    def _tester(self, tester_id) -> UartTester:
        if not self.testers:
            raise AssertionError("no terminal tester (Create Terminal Tester first)")
        return self.testers[-1 if tester_id in (None, "") else int(tester_id)][1]

    def _write(self, tester_id, data: bytes) -> None:
        idx = len(self.testers) - 1 if tester_id in (None, "") else int(tester_id)
        name = self.testers[idx][0]
        port = self._boards().status(name).get("port")
        if not port:
            raise AssertionError(f"machine {name} is not running (Start Emulation first)")
        with serial.Serial(port, 115200, timeout=1, exclusive=True) as ser:
            for b in data:  # a UART runs at its baud rate: one character at a time
                ser.write(bytes([b]))
                time.sleep(WRITE_CHAR_DELAY)

    def _stop_all(self) -> None:
        if self.boards is None:
            return
        for name in self.machines:
            try:
                if self.boards.is_running(name):
                    self.boards.stop(name)
            except BoardError as e:
                logger.warn(f"stopping {name}: {e}")
