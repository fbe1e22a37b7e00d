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


def _tree_package(tmp: Path, name: str, files: dict[str, bytes], version: str, counter: int) -> tuple[Path, str]:
    src = tmp / name
    for rel, data in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    res = build_package(model="pump-v2", version=version, sources=[src / "agent"], base_dir=src,
                        security_counter=counter, out_dir=tmp, output=tmp / f"{name}.mspk", keep_py=(),
                        source_date_epoch=0)
    return res.path, read_package(res.path).manifest_sha256


def test_update_at_the_file_cap_over_an_installed_slot_within_64k_above_idle(tmp_path):
    from updater.install.manifest import MAX_FILES

    rnd = random.Random(9)
    base = {"agent/main.py": b"def run(board, slot, trial=False):\n    pass\n"}
    for i in range(MAX_FILES - 1):  # deep, long paths: the largest manifest the cap allows
        base[f"agent/pkg{i % 7}/sub{i % 3}/module_with_a_long_name_{i:03d}.txt"] = rnd.randbytes(600)
    new = dict(base)
    for i, rel in enumerate(sorted(base)):
        if i % 2:
            new[rel] = rnd.randbytes(600)  # half the files change
    p1, s1 = _tree_package(tmp_path, "base", base, "1.0.0", 1)
    p2, s2 = _tree_package(tmp_path, "new", new, "1.1.0", 2)
    results = []
    for name in ("a.img", "b.img"):
        img = tmp_path / name
        simimage.create_blank(img, 4 * MIB)  # slots of 1 MiB: the file cap with its directories
        assert mpvm.run_script(Path(__file__).parent / "vm_scripts" / "format_image.py", str(img),
                               paths=[mpvm.REPO_ROOT]).returncode == 0
        proc = mpvm.run_script(Path(__file__).parent / "vm_scripts" / "install_base.py", str(img), str(p1), s1,
                               paths=[mpvm.REPO_ROOT])
        assert "CONFIRMED 1.0.0" in proc.stdout, proc.stdout + proc.stderr
        results.append(img)
    first = _install(results[0], p2, s2, "256k", "measure")
    assert first["files"] == MAX_FILES
    assert first["idle_free"] - first["low_free"] < 64 * 1024, first
    cap = (first["idle_alloc"] + 64 * 1024) // 1024
    second = _install(results[1], p2, s2, f"{cap}k")
    assert second["version"] == "1.1.0"
    print(f"update of {MAX_FILES} files over an installed slot: live peak "
          f"{first['idle_free'] - first['low_free']} B above idle; installed with heap {cap} KiB")


def test_largest_manifest_installs_in_a_heap_with_no_free_piece_larger_than_6k(tmp_path):
    """After a TUF check the heap has ~90 KB free but no large piece (the
    unloaded modules leave holes between live objects). The manifest of a
    package at the file cap (~11 KB) once had to sit in one bytearray: that
    install failed with MemoryError (a 53-file release did, on the board).
    Now it streams to flash and parses from there."""
    from updater.install.manifest import MAX_FILES

    files = {"agent/main.py": b"def run(board, slot, trial=False):\n    pass\n"}
    for i in range(MAX_FILES - 1):
        files[f"agent/pkg{i % 7}/sub{i % 3}/module_with_a_long_name_{i:03d}.txt"] = bytes([i]) * 300
    pkg, sha = _tree_package(tmp_path, "big", files, "1.0.0", 1)
    assert len(read_package(pkg).manifest_bytes) > 8 * 1024  # more than one hole
    img = tmp_path / "f.img"
    simimage.create_blank(img, 4 * MIB)  # slots of 1 MiB: the file cap with its directories
    assert mpvm.run_script(Path(__file__).parent / "vm_scripts" / "format_image.py", str(img),
                           paths=[mpvm.REPO_ROOT]).returncode == 0
    result = _install(img, pkg, sha, "256k", "fragment")
    assert result["files"] == MAX_FILES and result["holes"] >= 8, result
