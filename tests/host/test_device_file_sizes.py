"""Issue 9: no device source file grows past ~500 lines (split by job instead)."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIMIT = 500


def test_no_device_file_over_the_limit():
    big = {str(p.relative_to(REPO)): n for pkg in ("agent", "updater", "board")
           for p in (REPO / pkg).rglob("*.py")
           if (n := len(p.read_text().splitlines())) > LIMIT}
    assert big == {}, f"split these by job (over {LIMIT} lines): {big}"
