"""Memory of an install: a 1 MiB package installs on MicroPython under the
256 KiB heap cap, and again in a heap of only (idle use + 64 KiB), which
proves the peak stays within 64 KiB above idle."""
from __future__ import annotations

import json
import random
from pathlib import Path

from host_tools import mpvm
from host_tools.release.build import build_package
from host_tools.release.package import read_package
from host_tools.sim import image as simimage

SCRIPT = Path(__file__).parent / "vm_scripts" / "install_heap.py"
MIB = 1024 * 1024


def _package(tmp: Path) -> tuple[Path, str]:
    src = tmp / "src"
    rnd = random.Random(5)
    (src / "agent").mkdir(parents=True)
    (src / "agent" / "main.py").write_text("def run(board, slot, trial=False):\n    pass\n")
    for i in range(16):  # 16 x 64 KiB of incompressible data
        (src / "agent" / f"blob{i:02d}.bin").write_bytes(rnd.randbytes(64 * 1024))
    res = build_package(model="pump-v2", version="2.0.0", sources=[src / "agent"], base_dir=src,
                        security_counter=5, out_dir=tmp, keep_py=(), source_date_epoch=0)
    assert res.length >= MIB
    return res.path, read_package(res.path).manifest_sha256


def _install(img: Path, pkg: Path, sha: str, heap: str, *extra: str) -> dict:
    proc = mpvm.run_script(SCRIPT, str(img), str(pkg), sha, *extra, paths=[mpvm.REPO_ROOT], heap=heap, timeout=300)
    assert proc.returncode == 0, f"install failed with heap {heap}:\n{proc.stdout}{proc.stderr}"
    return json.loads(proc.stdout.split("RESULT ", 1)[1])


def test_one_mib_package_installs_within_64k_above_idle(tmp_path):
    pkg, sha = _package(tmp_path)
    images = []
    for name in ("a.img", "b.img"):
        img = tmp_path / name
        simimage.create_blank(img, 6 * MIB)  # slots of 1.5 MiB
        proc = mpvm.run_script(Path(__file__).parent / "vm_scripts" / "format_image.py", str(img),
                               paths=[mpvm.REPO_ROOT])
        assert proc.returncode == 0, proc.stderr
        images.append(img)
    first = _install(images[0], pkg, sha, "256k", "measure")
    assert first["files"] == 17
    used = first["idle_free"] - first["low_free"]
    assert used < 64 * 1024, first
    # Now in a heap just 64 KiB larger than what idle needed.
    cap = (first["idle_alloc"] + 64 * 1024) // 1024
    second = _install(images[1], pkg, sha, f"{cap}k")
    assert second["version"] == "2.0.0"
    print(f"1 MiB install: idle {first['idle_alloc']} B, lowest free during install "
          f"{first['low_free']} of {first['idle_free']}; also installed with heap {cap} KiB")
