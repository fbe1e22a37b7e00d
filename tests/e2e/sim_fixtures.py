"""Fixtures for tests that run simulated boards (import explicitly).

`sim_boards(tmp_path)` yields a host_tools.sim.boards.Boards on a fresh work
directory and stops every board it started when the test ends.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from host_tools.sim.boards import Boards


@contextlib.contextmanager
def sim_boards(workdir: Path) -> Iterator[Boards]:
    boards = Boards(workdir)
    try:
        yield boards
    finally:
        for name in boards.names():
            if boards.is_running(name):
                boards.stop(name)
