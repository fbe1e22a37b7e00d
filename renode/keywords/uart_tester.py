"""A terminal tester on a simulated board's UART output, with the matching
rules of Renode's TerminalTester: lines are consumed in order; a line
matches when it contains the text (or the regex finds a match in it); a
prompt may match an unfinished line; what precedes a match is consumed.

The board's supervisor (host_tools/sim/supervisor.py) writes every byte the
board puts on its UART to <board>/console.log, across resets and power cuts
(the pty itself drops bytes nobody reads, as a UART with no listener does).
The tester follows that file from where it was when the tester was created.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

POLL_S = 0.05
MAX_BUFFER = 256 * 1024


class TesterTimeout(AssertionError):
    """Nothing matching arrived within the timeout (Renode: "Terminal tester failed!")."""


class UartTester:
    def __init__(self, log: Path, timeout: float):
        self.log = log
        self.timeout = timeout
        self.offset = log.stat().st_size if log.exists() else 0
        self.buffer = ""
        self.seen: list[str] = []  # recent complete lines, for failure reports

    def _read(self) -> None:
        try:
            size = self.log.stat().st_size
        except FileNotFoundError:
            return
        if size < self.offset:  # the supervisor truncated its log (1 MiB cap)
            self.offset = 0
        if size == self.offset:
            return
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        self.offset += len(data)
        self.buffer = (self.buffer + data.decode("utf-8", errors="replace"))[-MAX_BUFFER:]

    @staticmethod
    def _matcher(content: str, regex: bool):
        pattern = re.compile(content if regex else re.escape(content))
        return pattern.search

    def _take_line(self, match) -> dict | None:
        while "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            line = line.rstrip("\r")
            self.seen = (self.seen + [line])[-20:]
            m = match(line)
            if m:
                return {"line": line, "groups": list(m.groups()), "timestamp": time.time()}
        return None

    def _take_prompt(self, match) -> dict | None:
        found = self._take_line(match)
        if found:
            return found
        m = match(self.buffer)  # the unfinished line: a prompt has no newline
        if m:
            line, self.buffer = self.buffer, self.buffer[m.end():]
            return {"line": line, "groups": list(m.groups()), "timestamp": time.time()}
        return None

    def _wait(self, content: str, timeout: float | None, regex: bool, prompt: bool, what: str) -> dict:
        match = self._matcher(content, regex)
        limit = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + limit
        while True:
            self._read()
            found = self._take_prompt(match) if prompt else self._take_line(match)
            if found:
                return found
            if time.monotonic() >= deadline:
                recent = "\n".join(self.seen[-10:] + ([self.buffer[-200:]] if self.buffer else []))
                raise TesterTimeout(f"Terminal tester failed!\n{what} {content!r} did not appear on the UART "
                                    f"within {limit:g} s. Last output:\n{recent}")
            time.sleep(POLL_S)

    def wait_for_line(self, content: str, timeout: float | None = None, regex: bool = False) -> dict:
        return self._wait(content, timeout, regex, False, "Line")

    def wait_for_prompt(self, prompt: str, timeout: float | None = None, regex: bool = False) -> dict:
        return self._wait(prompt, timeout, regex, True, "Prompt")

    def should_not_be_on_uart(self, content: str, timeout: float, regex: bool = False) -> None:
        match = self._matcher(content, regex)
        deadline = time.monotonic() + float(timeout)
        while time.monotonic() < deadline:
            self._read()
            found = self._take_line(match)
            if found:
                raise AssertionError(f"Terminal tester failed!\n{content!r} appeared on the UART: {found['line']!r}")
            time.sleep(POLL_S)
