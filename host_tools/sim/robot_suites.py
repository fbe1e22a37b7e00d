"""Run the Renode Robot suites (renode/tests) on the simulated board.

The suites import `${RENODEKEYWORDS}` (under renode-test: Renode's own
renode-keywords.robot) and `${BOARD_KEYWORDS}`; here both point at the
keyword library of renode/keywords that drives host_tools.sim boards.
Output (output.xml, log.html, report.html, the boards' work folders) goes
to renode/out/sim unless another folder is given.

    python -m host_tools.sim.robot_suites [OUTDIR] [robot options...]
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from host_tools import mpvm

RENODE = mpvm.REPO_ROOT / "renode"
KEYWORDS = RENODE / "keywords"
DEFAULT_OUT = RENODE / "out" / "sim"


def robot_command(outdir: Path, extra: list[str] | None = None) -> list[str]:
    return [
        sys.executable, "-m", "robot",
        "--pythonpath", str(KEYWORDS),
        "--variable", f"RENODEKEYWORDS:{KEYWORDS / 'sim.resource'}",
        "--variable", f"BOARD_KEYWORDS:{KEYWORDS / 'sim_board.resource'}",
        "--outputdir", str(outdir),
        "--consolecolors", "off",
        *(extra or []),
        str(RENODE / "tests"),
    ]


def run(outdir: Path = DEFAULT_OUT, extra: list[str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the suites; returncode is robot's (0 = all passed, else failures)."""
    outdir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(robot_command(outdir, extra), cwd=str(mpvm.REPO_ROOT), capture_output=True,
                          text=True, timeout=timeout)


def main() -> None:
    args = sys.argv[1:]
    outdir = Path(args.pop(0)) if args and not args[0].startswith("-") else DEFAULT_OUT
    outdir.mkdir(parents=True, exist_ok=True)
    print("running renode/tests on the SIMULATED board (host_tools.sim), not on Renode", flush=True)
    sys.exit(subprocess.call(robot_command(outdir, args), cwd=str(mpvm.REPO_ROOT)))


if __name__ == "__main__":
    main()
