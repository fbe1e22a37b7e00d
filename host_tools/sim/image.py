"""Flash images of simulated boards: create, factory-program, check."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from board.sim import flash as simflash
from host_tools import mpvm
from host_tools.sim.build import Build

BLOCK_SIZE = 4096


class ImageError(RuntimeError):
    """The flash image is missing, corrupt, or factory programming failed."""


def create_blank(path: Path, size: int, block_size: int = BLOCK_SIZE) -> None:
    """Write an erased (0xFF) image of `size` bytes with a partition table in block 0."""
    try:
        layout = simflash.default_layout(size, block_size)
    except simflash.FlashError as e:
        raise ImageError(str(e)) from None
    total = size // block_size
    table = simflash.pack_table(layout, block_size, total)
    tmp = path.with_suffix(".tmp")
    erased = b"\xff" * block_size
    with open(tmp, "wb") as f:
        f.write(table)
        for _ in range(total - 1):
            f.write(erased)
    os.replace(tmp, path)


def read_table(path: Path) -> tuple[int, int, list[tuple[str, int, int]]]:
    """Partition table of an image; ImageError when it is not a valid image."""
    try:
        with open(path, "rb") as f:
            head = f.read(BLOCK_SIZE)
        bs, total, parts = simflash.unpack_table(head)
    except FileNotFoundError:
        raise ImageError(f"flash image not found: {path}") from None
    except simflash.FlashError as e:
        raise ImageError(f"{path}: {e}") from None
    actual = path.stat().st_size
    if actual != bs * total:
        raise ImageError(f"{path}: size {actual} does not match its partition table ({total} x {bs})")
    return bs, total, parts


def factory_program(
    path: Path,
    build: Build,
    *,
    format_all: bool = True,
    install: dict[str, Path] | None = None,
    files: dict[str, str] | None = None,
    heap: str = mpvm.DEFAULT_HEAP,
) -> str:
    """Format the partitions and install the loader and the app into slot A
    (or the given install map) by running board/sim/factory.py on the VM."""
    spec = {
        "image": str(Path(path).resolve()),
        "format": [name for name, _, _ in read_table(path)[2]] if format_all else [],
        "install": {k: str(Path(v).resolve()) for k, v in (install or {}).items()},
        "files": files or {},
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
        spec_path = f.name
    try:
        proc = mpvm.run_script(
            build.firmware / "factory.py", spec_path, paths=[build.firmware], heap=heap, timeout=300
        )
    finally:
        os.unlink(spec_path)
    if proc.returncode != 0 or "FACTORY OK" not in proc.stdout:
        raise ImageError(f"factory programming failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


def new_board_image(path: Path, size: int, build: Build, model: str = "pump-v2") -> str:
    """A factory-fresh board: formatted partitions, loader, the factory firmware
    release for `model` in slot A (with its manifest and slot.json), boot state."""
    create_blank(path, size)
    return factory_program(
        path,
        build,
        install={"loader": build.loader, "slot_a": build.app_for(model)},
        files={"state/boot.json": json.dumps({"active": "a", "floor": 0, "trial": None, "events": []})},
    )
