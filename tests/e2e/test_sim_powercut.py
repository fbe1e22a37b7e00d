"""Power cut at EVERY flash write of a small multi-file write: littlefs on the
sim flash stays mountable and every file holds its old or its new content."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from host_tools import mpvm
from host_tools.sim import image as simimage

SCRIPT = Path(__file__).parent / "vm_scripts" / "powercut_files.py"


def _run(mode: str, img: Path, cut: int = 0):
    return mpvm.run_script(SCRIPT, mode, str(img), paths=[mpvm.REPO_ROOT],
                           env={"MEDSENTRY_POWERCUT_AT": str(cut)}, timeout=60)


def _state(img: Path) -> dict:
    proc = _run("check", img)
    assert proc.returncode == 0, f"flash not mountable after the cut:\n{proc.stdout}{proc.stderr}"
    line = [l for l in proc.stdout.splitlines() if l.startswith("STATE ")][0]
    return json.loads(line[6:])


def test_power_cut_at_every_write_index(tmp_path):
    pristine = tmp_path / "pristine.img"
    simimage.create_blank(pristine, 1024 * 1024)
    proc = _run("init", pristine)
    assert proc.returncode == 0, proc.stderr
    assert set(_state(pristine).values()) == {"old"}

    probe = tmp_path / "probe.img"
    shutil.copy(pristine, probe)
    proc = _run("write", probe)
    total = int(proc.stdout.split("WRITES")[1])
    assert total >= 10, "the write should span many flash operations"
    assert set(_state(probe).values()) == {"new"}

    seen = set()
    for k in range(1, total + 1):
        img = tmp_path / "cut.img"
        shutil.copy(pristine, img)
        proc = _run("write", img, cut=k)
        assert proc.returncode == -9, f"cut at write {k} did not kill the VM: {proc.returncode} {proc.stderr}"
        assert int((tmp_path / "cut.img.hit").read_text()) == k
        state = _state(img)
        assert all(v in ("old", "new") for v in state.values()), f"cut at write {k}: {state}"
        seen.add(tuple(sorted(state.items())))
        # A retry after power returns completes the write.
        assert _run("write", img).returncode == 0
        assert set(_state(img).values()) == {"new"}
    # The cuts landed at different stages: some before, some after each file.
    assert len(seen) >= 3, seen
    print(f"power cut exercised at {total} write indices")
