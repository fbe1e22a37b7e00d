"""The UART terminal tester behind the Renode keywords on the simulated board
(renode/keywords/uart_tester.py): Renode's matching rules, on a log file."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "renode" / "keywords"))
from uart_tester import TesterTimeout as UartTimeout, UartTester  # noqa: E402


def test_lines_match_in_order_and_are_consumed(tmp_path):
    log = tmp_path / "console.log"
    log.write_bytes(b"old line\r\n")
    t = UartTester(log, timeout=1)
    with open(log, "ab") as f:
        f.write(b"\r\n[ROM] boot: power_on\r\nmedsentry agent 1.0.0: slot a, reset power_on\r\n")
    assert t.wait_for_line("[ROM] boot: power_on")["line"] == "[ROM] boot: power_on"
    got = t.wait_for_line(r"agent (\S+): slot (\w)", regex=True)
    assert got["groups"] == ["1.0.0", "a"]
    # consumed: the same line does not match twice; what was there before the tester never matches
    with pytest.raises(UartTimeout, match="Terminal tester failed"):
        t.wait_for_line("slot a", timeout=0.2)
    with pytest.raises(UartTimeout):
        t.wait_for_line("old line", timeout=0.2)


def test_text_is_literal_unless_regex(tmp_path):
    log = tmp_path / "console.log"
    t = UartTester(log, timeout=0.3)
    log.write_bytes(b"abc\r\n")
    with pytest.raises(UartTimeout):
        t.wait_for_line("a.c")  # "." is a dot, not any character
    log.write_bytes(b"abc\r\nabc\r\n")
    assert t.wait_for_line("a.c", regex=True)["line"] == "abc"


def test_prompt_matches_an_unfinished_line_and_lines_arriving_later(tmp_path):
    log = tmp_path / "console.log"
    t = UartTester(log, timeout=5)

    def board():
        time.sleep(0.3)
        with open(log, "ab") as f:
            f.write(b"KeyboardInterrupt\r\n>>> ")

    th = threading.Thread(target=board)
    th.start()
    assert t.wait_for_prompt(">>> ")["line"] == ">>> "
    th.join()
    with open(log, "ab") as f:
        f.write(b"print(1)\r\n1\r\n")
    assert t.wait_for_line("^1$", regex=True)["line"] == "1"


def test_should_not_be_on_uart(tmp_path):
    log = tmp_path / "console.log"
    t = UartTester(log, timeout=1)
    log.write_bytes(b"fine\r\n")
    t.should_not_be_on_uart("Traceback", 0.2)
    log.write_bytes(b"fine\r\nTraceback (most recent call last):\r\n")
    with pytest.raises(AssertionError, match="appeared on the UART"):
        t.should_not_be_on_uart("Traceback", 0.5)


def test_renode_run_says_it_is_skipping_without_renode(tmp_path):
    env = dict(os.environ, PATH="/usr/bin:/bin")
    proc = subprocess.run([str(ROOT / "renode" / "run")], capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 0
    assert "SKIPPING: renode-test is not on PATH" in proc.stdout
