"""One row per simulated board for `sim list` (table and --json): what the
supervisor's status.json and the running agent's last status say."""
from __future__ import annotations

import json
from typing import Any

from host_tools.sim.boards import Boards

COLUMNS = ("board", "state", "model", "firmware", "slot", "provisioned", "link", "updates", "port", "heap",
           "boots", "last_reset", "error")


def board_row(boards: Boards, name: str) -> dict[str, Any]:
    """The row for board ``name``; None where the board does not say (stopped, or
    its agent not reporting yet)."""
    cfg = json.loads((boards.existing(name) / "board.json").read_text())
    st = boards.status(name)
    dev = st.get("device") or {}
    tel = dev.get("telemetry")
    running = st.get("state") not in ("stopped", "halted")
    if not dev:
        provisioned = None
    else:
        provisioned = bool(dev.get("device_id"))
    if isinstance(tel, dict):
        link: str | None = "online" if tel.get("connected") else "offline"
    else:
        link = "no identity" if provisioned is False else None
    return {
        "board": name,
        "state": st.get("state"),
        "model": dev.get("model") or cfg.get("model"),
        "firmware": dev.get("version"),
        "slot": dev.get("slot"),
        "provisioned": provisioned,
        "link": link,
        "updates": dev.get("updates"),
        "port": st.get("port") if running else None,
        "heap": st.get("heap"),
        "boots": st.get("boots", 0),
        "last_reset": st.get("last_reset_reason"),
        "error": st.get("error"),
    }


def rows(boards: Boards) -> list[dict[str, Any]]:
    return [board_row(boards, n) for n in boards.names()]
