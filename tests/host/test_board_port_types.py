"""The device code type-checks against the real board port's API (issue 16,
part 2): mypy with micropython-stm32-stubs and micropython-stdlib-stubs in
place of CPython's typeshed, over board/stm32/ and every module the device
runs (agent/, updater/, board/hal.py, board/compat.py, board/netguard.py).
The relaxations live in board/stm32/mypy.ini, each with its reason."""
from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "board" / "stm32" / "mypy.ini"
STUB_DISTS = ("micropython-stm32-stubs", "micropython-stdlib-stubs")
STM32_STUBS_VERSION = "1.29.0.post1"
DEVICE_CODE = ("agent", "updater", "board/hal.py", "board/compat.py", "board/netguard.py", "board/stm32")
# cryptolib: the firmware enables it (MICROPY_PY_CRYPTOLIB in
# board/stm32/MEDSENTRY_F767ZI/mpconfigboard.h), but the 1.29 stm32 stubs were
# generated from a build without it: they only carry `ucryptolib`, an alias of
# a `cryptolib` they do not have. This is the module as MicroPython documents
# it (docs/library/cryptolib.rst: aes(key, mode[, IV]), encrypt/decrypt(in_buf[, out_buf])).
EXTRA_STUBS = {
    "cryptolib.pyi": (
        "from typing import Optional, Union\n"
        "_Buf = Union[bytes, bytearray, memoryview]\n"
        "class aes:\n"
        "    def __init__(self, key: _Buf, mode: int, IV: _Buf = ..., /) -> None: ...\n"
        "    def encrypt(self, in_buf: _Buf, out_buf: Optional[Union[bytearray, memoryview]] = None, /) -> bytes: ...\n"
        "    def decrypt(self, in_buf: _Buf, out_buf: Optional[Union[bytearray, memoryview]] = None, /) -> bytes: ...\n"
    ),
}


def _typings(root: Path) -> Path:
    """A typeshed-shaped stub tree (stdlib/VERSIONS + port modules) linked from
    the installed stub distributions - what `pip install --target typings`
    gives, without a second install."""
    for dist in STUB_DISTS:
        try:
            files = md.distribution(dist).files or []
        except md.PackageNotFoundError:
            pytest.fail(f"{dist} is not installed: run `make setup` (pyproject dev extra)")
        for f in files:
            rel = str(f)
            if ".dist-info" in rel or not (rel.endswith(".pyi") or rel.endswith("VERSIONS")):
                continue
            dst = root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                dst.symlink_to(Path(str(f.locate())).resolve())
    for name, text in EXTRA_STUBS.items():
        (root / name).write_text(text)
    assert (root / "stdlib" / "VERSIONS").is_file() and (root / "machine.pyi").is_file()
    return root


@pytest.fixture(scope="module")
def typings(tmp_path_factory) -> Path:
    return _typings(tmp_path_factory.mktemp("typings"))


def _mypy(typings: Path, cache: Path, *targets: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MYPYPATH=str(typings))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(CONFIG), "--custom-typeshed-dir", str(typings),
         "--cache-dir", str(cache), "--no-error-summary", "--hide-error-context", *targets],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


def test_the_pinned_stubs_are_installed():
    assert md.version("micropython-stm32-stubs") == STM32_STUBS_VERSION


def test_device_code_and_the_stm32_port_type_check(typings, tmp_path):
    r = _mypy(typings, tmp_path / "cache", *DEVICE_CODE)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "error:" not in r.stdout


def test_the_checker_sees_the_port_api(typings, tmp_path):
    # A wrong call to the port's API fails: the stubs are in effect, the
    # modules are not silently Any, and the bodies of unannotated functions
    # (all device code) are checked.
    bad = tmp_path / "bad_port_call.py"
    bad.write_text(
        "import machine\nimport pyb\n"
        "def arm(ms):\n"
        "    machine.WDT(timeout='5s')\n"
        "    pyb.Flash(start=0, length=4096)\n"
        "    machine.no_such_function()\n"
    )
    r = _mypy(typings, tmp_path / "cache", str(bad))
    assert r.returncode == 1
    assert 'Argument "timeout" to "WDT"' in r.stdout
    assert 'Unexpected keyword argument "length"' in r.stdout
    assert 'has no attribute "no_such_function"' in r.stdout


def test_the_port_imports_only_on_the_port():
    # board/stm32 uses the stm32 port's modules directly, with no fallbacks:
    # on CPython (and on the unix port of the sim board) it does not import.
    r = subprocess.run([sys.executable, "-c", "import board.stm32.stmboard"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "ModuleNotFoundError" in r.stderr and ("machine" in r.stderr or "pyb" in r.stderr)


class _ImageFlash:
    """Test double of the stm32 port's pyb.Flash(start=, len=) over an image file:
    extended-protocol reads that return an error code, as ports/stm32/storage.c."""

    path: Path

    def __init__(self, *, start: int, len: int) -> None:  # noqa: A002 - the port's keyword
        self.start, self.len = start, len

    def ioctl(self, op: int, arg: int) -> int:
        return 0

    def readblocks(self, block: int, buf: bytearray, offset: int) -> int:
        with open(self.path, "rb") as f:
            f.seek(self.start + block * 4096 + offset)
            data = f.read(len(buf))
        buf[: len(data)] = data
        return 0 if len(data) == len(buf) else -5


def test_the_port_reads_the_partition_table_of_a_sim_image(tmp_path, monkeypatch):
    # The port reads the table the host's image builder writes (board/sim's
    # MSFLASH1 format), so `medsentry sim` factory images program the NOR.
    import importlib
    import types

    from host_tools.sim import image as simimage

    img = tmp_path / "nor.img"
    simimage.create_blank(img, 2 * 1024 * 1024)
    _ImageFlash.path = img
    monkeypatch.setitem(sys.modules, "pyb", types.SimpleNamespace(Flash=_ImageFlash))
    monkeypatch.setitem(sys.modules, "vfs", types.SimpleNamespace())
    monkeypatch.delitem(sys.modules, "board.stm32.flash", raising=False)
    stmflash = importlib.import_module("board.stm32.flash")
    try:
        bs, total, parts = stmflash.read_table()
        assert (bs, total) == (4096, 512)
        assert [p[0] for p in parts] == ["loader", "slot_a", "slot_b", "state", "data"]
        assert (bs, total, parts) == simimage.read_table(img)
        raw = bytearray(img.read_bytes())
        raw[40] ^= 0xFF  # inside the entries: the check no longer matches
        img.write_bytes(bytes(raw))
        with pytest.raises(stmflash.FlashError, match="check mismatch"):
            stmflash.read_table()
        img.write_bytes(b"\xff" * 8192)
        with pytest.raises(stmflash.FlashError, match="no partition table"):
            stmflash.read_table()
    finally:
        sys.modules.pop("board.stm32.flash", None)
