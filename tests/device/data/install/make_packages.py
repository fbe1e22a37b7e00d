"""Generate the installer's golden packages with the real package builder
(host_tools.release.build). Run from the repo root:
    .venv/bin/python tests/device/data/install/make_packages.py
Writes *.mspk and index.json (target name -> manifest_sha256, length, sha256)."""
from __future__ import annotations

import hashlib
import json
import random
import shutil
import tempfile
from pathlib import Path

from host_tools.release.build import build_package
from host_tools.release.package import HEADER_SIZE, read_package, write_package

OUT = Path(__file__).resolve().parent


def tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def main() -> None:
    rnd = random.Random(20261130)
    blob = bytes(rnd.getrandbits(8) for _ in range(6000))
    v1 = {
        "agent/main.py": b"def run(board, slot, trial=False):\n    return 'v1'\n",
        "agent/notes.txt": b"version one notes\n" * 120,
        "lib/blob.bin": blob,
        "lib/const.txt": b"unchanged\n" * 50,
    }
    v2 = dict(v1)
    v2["agent/notes.txt"] = b"version two notes, changed\n" * 100
    index = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)

        def build(name, files, **kw):
            src = t / name
            tree(src, files)
            res = build_package(sources=[src], base_dir=src, out_dir=t, output=OUT / f"{name}.mspk",
                                source_date_epoch=1700000000, **kw)
            res.sbom_path.unlink()
            info = read_package(res.path)
            index[name] = {"manifest_sha256": info.manifest_sha256, "length": res.length,
                           "sha256": res.sha256, "data_offset": HEADER_SIZE + len(info.manifest_bytes)}
            shutil.rmtree(src)
            return res

        build("pump-1.0.0", v1, model="pump-v2", version="1.0.0", security_counter=1)
        build("pump-1.1.0", v2, model="pump-v2", version="1.1.0", security_counter=2)
        build("pump-1.1.0-patch", v2, model="pump-v2", version="1.1.0", security_counter=2,
              base_package=OUT / "pump-1.0.0.mspk")
        build("monitor-1.1.0", v2, model="monitor-v1", version="1.1.0", security_counter=2)
        build("pump-2.0.0-needs-1.1", v2 | {"lib/const.txt": b"v2\n"}, model="pump-v2", version="2.0.0",
              security_counter=3, min_base_version="1.1.0")
        # Many files: the device's file cap (MAX_FILES = 64), for
        # the heap of an update over an installed slot.
        many1 = {"agent/main.py": v1["agent/main.py"]}
        for i in range(63):
            many1["lib/m%03d.txt" % i] = b"module %d, first edition\n" % i * 4
        many2 = dict(many1)
        for i in range(0, 63, 2):
            many2["lib/m%03d.txt" % i] = b"module %d, second edition\n" % i * 4
        build("pump-many-1.0.0", many1, model="pump-v2", version="1.0.0", security_counter=1)
        build("pump-many-1.1.0", many2, model="pump-v2", version="1.1.0", security_counter=2)
        # A file named like the installer's own slot.json: it would make the slot
        # look complete (and claim any counter) before the install is verified.
        build("pump-1.1.0-slotjson", v2 | {"slot.json": b'{"version":"9.9.9","security_counter":99}'},
              model="pump-v2", version="1.1.0", security_counter=2)
    # Hand-made with the real package writer (a signer's bug or a stolen key):
    # "lib" is both a file and the directory of lib/blob.bin.
    base = read_package(OUT / "pump-1.1.0.mspk")
    contents = {f["path"]: base.file(f["path"]) for f in base.manifest["files"]}
    contents["lib"] = b"a file where a directory must be\n"
    man = dict(base.manifest)
    man.pop("sbom")
    files = [{k: v for k, v in f.items() if k not in ("offset", "csize")} for f in man["files"]]
    files.append({"path": "lib", "size": len(contents["lib"]), "stored": True,
                  "sha256": hashlib.sha256(contents["lib"]).hexdigest()})
    man["files"] = sorted(files, key=lambda f: f["path"])
    data = write_package(man, contents, base.sbom())
    (OUT / "pump-1.1.0-filedir.mspk").write_bytes(data)
    info = read_package(OUT / "pump-1.1.0-filedir.mspk")
    index["pump-1.1.0-filedir"] = {"manifest_sha256": info.manifest_sha256, "length": len(data),
                                   "sha256": hashlib.sha256(data).hexdigest(),
                                   "data_offset": HEADER_SIZE + len(info.manifest_bytes)}
    # Tampered: one byte of the first stored blob flipped; manifest intact.
    data = bytearray((OUT / "pump-1.1.0.mspk").read_bytes())
    data[index["pump-1.1.0"]["data_offset"] + 10] ^= 0x40
    (OUT / "pump-1.1.0-tampered.mspk").write_bytes(bytes(data))
    index["pump-1.1.0-tampered"] = dict(index["pump-1.1.0"], sha256=hashlib.sha256(data).hexdigest())
    # Truncated in the middle of the data section (an interrupted transfer).
    full = (OUT / "pump-1.1.0.mspk").read_bytes()
    (OUT / "pump-1.1.0-truncated.mspk").write_bytes(full[: index["pump-1.1.0"]["data_offset"] + 900])
    (OUT / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
