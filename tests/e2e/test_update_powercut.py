"""Power-fail safety of updates: a power cut at EVERY flash write of a full
update cycle (install, activate, trial boot, confirm) and of a rollback cycle
(install, activate, trial boot failing its health check, rollback boot).
After each cut the board boots a consistent slot (old or new, never a mix:
every file of the slot that would boot is verified against its manifest),
the boot state is valid, and carrying on completes the cycle."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from host_tools import mpvm
from host_tools.sim import image as simimage

SCRIPT = Path(__file__).parent / "vm_scripts" / "update_cycle.py"
DATA = Path(__file__).resolve().parents[1] / "device" / "data" / "install"
INDEX = json.loads((DATA / "index.json").read_text())
OLD, NEW = "pump-1.0.0", "pump-1.1.0"


def run(*args: str, cut: int = 0):
    return mpvm.run_script(SCRIPT, *args, paths=[mpvm.REPO_ROOT],
                           env={"MEDSENTRY_POWERCUT_AT": str(cut)}, timeout=120)


def pkg(name: str) -> tuple[str, str]:
    return str(DATA / f"{name}.mspk"), INDEX[name]["manifest_sha256"]


def ok_output(proc) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def writes(out: str) -> int:
    return int(out.rsplit("WRITES", 1)[1])


def states(out: str) -> list[dict]:
    return [json.loads(l[6:]) for l in out.splitlines() if l.startswith("STATE ")]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    img = tmp_path_factory.mktemp("pc") / "pristine.img"
    simimage.create_blank(img, 1024 * 1024)
    ok_output(run("factory", str(img), *pkg(OLD)))
    return img


def check_cycle(pristine: Path, tmp_path: Path, ok: bool) -> int:
    flag = "ok" if ok else "fail"
    want = "1.1.0" if ok else "1.0.0"
    probe = tmp_path / "probe.img"
    shutil.copy(pristine, probe)
    total = writes(ok_output(run("cycle", str(probe), flag, *pkg(NEW))))
    final = states(ok_output(run("recover", str(probe), flag, *pkg(NEW))))[-1]
    assert final["version"] == want and not final["pending_trial"]
    assert total > 50
    seen = set()
    for k in range(1, total + 1):
        img = tmp_path / "cut.img"
        shutil.copy(pristine, img)
        proc = run("cycle", str(img), flag, *pkg(NEW), cut=k)
        assert proc.returncode == -9, f"cut at write {k} of {total} did not happen: {proc.stdout}{proc.stderr}"
        after_cut, end = states(ok_output(run("recover", str(img), flag, *pkg(NEW))))
        assert after_cut["version"] in ("1.0.0", "1.1.0") and not after_cut["corrupt"], (k, after_cut)
        seen.add(after_cut["version"])
        assert end["version"] == want and not end["pending_trial"] and not end["journal"], (k, after_cut, end)
        if not ok:
            assert end["last_event"] == "rolled_back", (k, end)
        else:
            assert end["floor"] == 2, (k, end)
    # Cuts landed before and after the switch to the new slot.
    assert seen == {"1.0.0", "1.1.0"}, seen
    return total


def test_power_cut_at_every_write_of_an_update(pristine, tmp_path):
    n = check_cycle(pristine, tmp_path, ok=True)
    print(f"update cycle: power cut survived at all {n} flash write indices")


def test_power_cut_at_every_write_of_a_rollback(pristine, tmp_path):
    n = check_cycle(pristine, tmp_path, ok=False)
    print(f"rollback cycle: power cut survived at all {n} flash write indices")


def test_power_cut_again_while_recovering(pristine, tmp_path):
    """A second cut while the board carries on after the first (a resumed
    install, a trial boot, a rollback boot): still a consistent slot, and the
    cycle still completes. Pairs of cut points drawn with a fixed seed."""
    import random

    rnd = random.Random(5)
    for flag, want in (("ok", "1.1.0"), ("fail", "1.0.0")):
        probe = tmp_path / "probe.img"
        shutil.copy(pristine, probe)
        total = writes(ok_output(run("cycle", str(probe), flag, *pkg(NEW))))
        pairs = 0
        for k in sorted(rnd.sample(range(1, total + 1), 8)):
            img = tmp_path / "cut.img"
            shutil.copy(pristine, img)
            assert run("cycle", str(img), flag, *pkg(NEW), cut=k).returncode == -9
            # How many writes does recovery from this cut make?
            again = tmp_path / "again.img"
            shutil.copy(img, again)
            rec = writes(ok_output(run("recover", str(again), flag, *pkg(NEW))))
            if rec == 0:
                continue
            k2 = rnd.randint(1, rec)
            proc = run("recover", str(img), flag, *pkg(NEW), cut=k2)
            assert proc.returncode == -9, (k, k2, proc.stdout, proc.stderr)
            after, end = states(ok_output(run("recover", str(img), flag, *pkg(NEW))))
            assert after["version"] in ("1.0.0", "1.1.0") and not after["corrupt"], (k, k2, after)
            assert end["version"] == want and not end["pending_trial"] and not end["journal"], (k, k2, end)
            pairs += 1
        assert pairs >= 4, pairs
