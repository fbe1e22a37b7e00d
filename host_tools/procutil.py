"""Small helpers shared by the runners of external servers (Mosquitto, FreeRADIUS)."""
from __future__ import annotations

import subprocess
from pathlib import Path


def read_log(path: Path) -> str:
    """A server's log text, or "" when it does not exist (yet)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; always reaps the process."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
