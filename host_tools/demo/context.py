"""What the demo's stages share: the boards, the output directory, the
summary they each add a section to, and the servers they leave running."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rich.console import Console

from host_tools.sim.boards import Boards

# board name -> device model
DEMO_BOARDS = {"pump-1": "pump-v2", "pump-2": "pump-v2", "monitor-1": "monitor-v1"}


@dataclass
class DemoContext:
    out: Path
    workdir: Path
    boards: Boards
    names: list[str]
    console: Console
    summary: dict = field(default_factory=dict)
    # What one stage hands to a later one (e.g. the update server URL and the
    # TUF root that provisioning writes into each board).
    shared: dict = field(default_factory=dict)
    # Stop actions registered by stages (servers, brokers), run at the end.
    cleanup: list[Callable[[], None]] = field(default_factory=list)
