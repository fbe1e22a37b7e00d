"""Input the release tooling must refuse (issue 11 item 6), each attack of the
review repeated: symbolic links out of the source tree, /dev/zero and a FIFO
as a package, a package inflating to 1 GiB, -o into a missing or unwritable
directory. Every refusal is a clear error (exit 1, no traceback), quickly,
and the repository is unchanged."""
from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from test_release_support import make_workdir  # noqa: E402

from board.sim import flash as simflash  # noqa: E402
from host_tools.cli.main import cli  # noqa: E402
from host_tools.mpvm import parse_size  # noqa: E402
from host_tools.release import package as pk  # noqa: E402
from host_tools.release.config import DEFAULT_SLOT_SIZE  # noqa: E402
from host_tools.release.errors import SlotTooSmall  # noqa: E402
from host_tools.release.inputs import InputError  # noqa: E402
from host_tools.release.publish import publish_package  # noqa: E402
from host_tools.sim.boards import DEFAULT_FLASH  # noqa: E402

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("inputs"), models=("pump-v2", "monitor-v1"))


def run(env, *args, timeout: float = 20.0):
    """The CLI in-process; fails the test if it takes longer than `timeout`
    (a hang on a FIFO) or prints a traceback."""
    box = {}

    def target():
        box["r"] = CliRunner().invoke(cli, ["--workdir", str(env.workdir), *args], env=env.pw.env())

    t = threading.Thread(target=target, daemon=True)
    t0 = time.monotonic()
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"`medsentry {' '.join(args)}` hung for {timeout} s"
    r = box["r"]
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"traceback from {args}: {r.exception!r}") from r.exception
    assert "Traceback" not in r.output
    return r, time.monotonic() - t0


def refused(env, *args, match: str, timeout: float = 5.0):
    r, took = run(env, *args, timeout=timeout)
    assert r.exit_code in (1, 2), (r.exit_code, r.output)  # 2: click refused the argument itself
    assert match in r.output, r.output
    return took


def build_args(src: Path, out: Path | None = None, model: str = "pump-v2", version: str = "1.0.0"):
    args = ["package", "build", "--model", model, "--version", version, "--security-counter", "1",
            "--base-dir", str(src)]
    if out is not None:
        args += ["-o", str(out)]
    return [*args, str(src)]


def tree(tmp_path: Path, name: str) -> Path:
    src = tmp_path / name
    (src / "app").mkdir(parents=True)
    (src / "main.py").write_text("print('hi')\n")
    (src / "app" / "conf.json").write_text("{}\n")
    return src


def test_default_slot_size_is_the_boards_slot():
    table = dict(simflash.default_layout(parse_size(DEFAULT_FLASH)))
    assert table["slot_a"] * 4096 == table["slot_b"] * 4096 == DEFAULT_SLOT_SIZE


def test_build_refuses_links_that_leave_the_source_tree(env, tmp_path):
    src = tree(tmp_path, "src")
    (src / "app" / "passwd.txt").symlink_to("/etc/passwd")
    refused(env, *build_args(src, tmp_path / "a.mspk"), match="leads outside the source tree")
    (src / "app" / "passwd.txt").unlink()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.py").write_text("KEY = 'x'\n")
    (src / "lib").symlink_to(tmp_path / "outside", target_is_directory=True)
    refused(env, *build_args(src, tmp_path / "a.mspk"), match="leads outside the source tree")
    (src / "lib").unlink()
    (src / "app" / "zero.bin").symlink_to("/dev/zero")
    refused(env, *build_args(src, tmp_path / "a.mspk"), match="leads outside the source tree")
    (src / "app" / "zero.bin").unlink()
    os.mkfifo(src / "app" / "pipe.bin")
    refused(env, *build_args(src, tmp_path / "a.mspk"), match="not a regular file")
    (src / "app" / "pipe.bin").unlink()
    (src / "app" / "same.json").symlink_to(src / "app" / "conf.json")  # a link inside the tree is fine
    r, _ = run(env, *build_args(src, tmp_path / "a.mspk"))
    assert r.exit_code == 0, r.output
    assert not list(tmp_path.glob("*.mspk"))[0].read_bytes().count(b"root:x:0:0")


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "directory", "missing", "huge"])
@pytest.mark.parametrize("command", [("package", "inspect"), ("package", "sbom"), ("release", "publish")])
def test_package_readers_take_only_capped_regular_files(env, tmp_path, kind, command):
    path = {"dev-zero": Path("/dev/zero"), "fifo": tmp_path / "p.mspk", "directory": tmp_path,
            "missing": tmp_path / "nope.mspk", "huge": tmp_path / "huge.mspk"}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    if kind == "huge":
        with open(path, "wb") as fh:
            fh.truncate(pk.MAX_PACKAGE_BYTES + 1)  # sparse: costs no disk
    before = env.digest()
    extra = ["--no-prompt"] if command[0] == "release" else []
    took = refused(env, *command, str(path), *extra, match=str(path))
    assert took < 2.0, f"{kind}: {took:.1f} s"
    assert env.digest() == before


def bomb(path: Path, model: str = "pump-v2", files: int = 64, size: int = 16 * MIB) -> Path:
    """A well-formed package of `files` files of `size` zero bytes each (one
    compressed blob repeated): 1 GiB once inflated, ~1 MiB on disk."""
    blob = pk.compress(bytes(size))
    sha = hashlib.sha256(bytes(size)).hexdigest()
    entries = [{"path": f"f{i:02d}.bin", "size": size, "sha256": sha, "stored": True,
                "offset": i * len(blob), "csize": len(blob)} for i in range(files)]
    sbom = b"{}"
    sblob = pk.compress(sbom)
    manifest = {"format": pk.FORMAT_NAME, "model": model, "compatible_models": [model], "version": "9.0.0",
                "security_counter": 90, "min_base_version": "0.0.0", "kind": "full", "base_version": None,
                "compression": {"method": "zlib", "wbits": pk.WBITS}, "build": {}, "files": entries,
                "sbom": {"format": "CycloneDX-1.6+json", "offset": files * len(blob), "csize": len(sblob),
                         "size": len(sbom), "sha256": hashlib.sha256(sbom).hexdigest()}}
    mbytes = pk.canonical_json(manifest)
    header = pk.HEADER.pack(pk.MAGIC, pk.FORMAT_VERSION, 0, 0, len(mbytes), hashlib.sha256(mbytes).digest())
    with open(path, "wb") as fh:
        fh.write(header + mbytes)
        for _ in range(files):
            fh.write(blob)
        fh.write(sblob)
    return path


def test_a_package_inflating_to_1_gib_is_refused_before_inflating(env, tmp_path):
    path = bomb(tmp_path / "bomb.mspk")
    manifest, _ = pk.parse_header(path.read_bytes())
    pk.validate_manifest(manifest)  # well-formed: only its size is wrong
    assert sum(f["size"] for f in manifest["files"]) == 1024 * MIB
    before = env.digest()
    t0 = time.monotonic()
    with pytest.raises(SlotTooSmall, match="pump-v2 slot holds 524288"):
        with env.session() as s:
            publish_package(s, path)
    assert time.monotonic() - t0 < 2.0
    assert env.digest() == before
    assert refused(env, "release", "publish", str(path), "--no-prompt", match="slot holds") < 2.0
    assert refused(env, "package", "inspect", str(path), match="slot holds") < 2.0
    assert env.digest() == before


def test_build_refuses_what_cannot_fit_the_slot_and_the_slot_size_is_per_model(env, tmp_path):
    src = tree(tmp_path, "src")
    for i in range(64):  # 64 x 16 MiB sparse data files: refused before any is read
        with open(src / "app" / f"d{i:02d}.bin", "wb") as fh:
            fh.truncate(16 * MIB)
    assert refused(env, *build_args(src, tmp_path / "b.mspk"), match="slot holds") < 5.0
    for f in (src / "app").glob("d*.bin"):
        f.unlink()
    (src / "app" / "table.bin").write_bytes(os.urandom(600 * 1024))  # with its download blob beside it: more than a 512 KiB slot
    refused(env, *build_args(src, tmp_path / "c.mspk"), match="the pump-v2 slot holds 524288")
    r, _ = run(env, "repo", "slot-size", "monitor-v1", "2M")
    assert r.exit_code == 0 and "2097152" in r.output, r.output
    r, _ = run(env, *build_args(src, tmp_path / "m.mspk", model="monitor-v1"))
    assert r.exit_code == 0, r.output
    r, _ = run(env, "package", "inspect", str(tmp_path / "m.mspk"))
    assert r.exit_code == 0, r.output
    r, _ = run(env, "release", "publish", str(tmp_path / "m.mspk"), "--no-prompt")
    assert r.exit_code == 0, r.output
    r, _ = run(env, "repo", "slot-size", "monitor-v1", "lots")
    assert r.exit_code == 2 and "not a size" in r.output


def test_output_into_a_missing_or_unwritable_directory_is_a_clear_error(env, tmp_path):
    src = tree(tmp_path, "src")
    missing = tmp_path / "no" / "such" / "dir"
    refused(env, *build_args(src, missing / "p.mspk"), match="does not exist")
    assert not (tmp_path / "no").exists(), "-o created directories"
    refused(env, *build_args(src, tmp_path), match="is a directory")
    refused(env, *build_args(src, Path("/proc/p.mspk")), match="cannot write /proc/p.mspk")
    refused(env, *build_args(src, Path("/etc/passwd/p.mspk")), match="does not exist")


def test_read_regular_caps_before_reading(tmp_path):
    from host_tools.release.inputs import read_regular

    (tmp_path / "f").write_bytes(b"12345")
    assert read_regular(tmp_path / "f", 5) == b"12345"
    with pytest.raises(InputError, match="5 bytes; the limit is 4"):
        read_regular(tmp_path / "f", 4)
    with pytest.raises(InputError, match="not a regular file"):
        read_regular(Path("/dev/zero"), 1 << 40)
