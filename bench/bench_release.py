"""Benchmark: publish one release into a repository that already holds 1,000
releases across 20 device models, against python-tuf's own minimal publish of
one target (Metadata API: add a TargetFile to targets, new snapshot and
timestamp, sign, write) measured in the same run.

Our figure includes everything `medsentry release publish` does: lock, load and
verify the whole repository (root chain, timestamp, snapshot, targets, 20 model
roles), verify the package file by file, sign the model role, snapshot and
timestamp, and write the files in order. Run: .venv/bin/python bench/bench_release.py
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from securesystemslib.signer import CryptoSigner  # noqa: E402
from tuf.api.metadata import (  # noqa: E402
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer  # noqa: E402

from host_tools.release.build import build_package  # noqa: E402
from host_tools.release.initialize import init_workdir  # noqa: E402
from host_tools.release.package import canonical_json  # noqa: E402
from host_tools.release.publish import package_target_path, publish_package  # noqa: E402
from host_tools.release.roles.models import add_model  # noqa: E402
from host_tools.release.session import open_session  # noqa: E402

MODELS = 20
PER_MODEL = 50
ROUNDS = 5


class Pw:
    def existing(self, name: str) -> str:
        return f"bench-{name}-passphrase"

    def new(self, name: str, rotation: bool = False) -> str:
        return self.existing(name)


def setup_big_repo(wd: Path) -> None:
    """1,000 releases (targets with custom fields and real files) across 20
    model roles, written through the library's staged Metadata API path."""
    pw = Pw()
    init_workdir(wd, pw)
    with open_session(wd, pw) as s:
        for i in range(MODELS):
            # add_model commits each time; reload state in the same session is
            # fine because the repository object keeps what it staged
            add_model(s, f"model{i:02d}-v1")
    with open_session(wd, pw) as s:
        repo = s.repo
        for i in range(MODELS):
            model = f"model{i:02d}-v1"
            with repo.edit_targets(model) as role:
                for j in range(PER_MODEL):
                    version = f"1.{j}.0"
                    data = canonical_json({"model": model, "version": version, "filler": "x" * 200})
                    tf = repo.stage_target(
                        package_target_path(model, version),
                        data,
                        {"type": "package", "model": model, "compatible_models": [model], "version": version,
                         "security_counter": j + 1, "channel": "stable", "package_kind": "full",
                         "base_version": None, "min_base_version": "0.0.0",
                         "manifest_sha256": "0" * 64, "manifest_length": 0},
                    )
                    role.targets[tf.path] = tf
        repo.publish_top()
        repo.commit()


def bench_ours(wd: Path, src: Path, tmp: Path) -> list[float]:
    pw = Pw()
    packages = [
        build_package(model="model07-v1", version=f"2.{k}.0", sources=[src], base_dir=src,
                      security_counter=1000 + k, out_dir=tmp / "pkgs").path
        for k in range(ROUNDS)
    ]
    times = []
    for pkg in packages:
        t0 = time.perf_counter()
        with open_session(wd, pw) as s:
            publish_package(s, pkg)
        times.append(time.perf_counter() - t0)
    return times


def bench_python_tuf(base: Path, payload: bytes) -> list[float]:
    """python-tuf minimal repository: one key per role, load targets, snapshot,
    timestamp from disk, add one target, re-sign all three, write."""
    meta = base / "metadata"
    meta.mkdir(parents=True)
    (base / "targets").mkdir()
    signers = {r: CryptoSigner.generate_ed25519() for r in ("root", "targets", "snapshot", "timestamp")}
    exp = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=7)
    root = Root(expires=exp, consistent_snapshot=True)
    for r, sg in signers.items():
        root.add_key(sg.public_key, r)
    ser = JSONSerializer(compact=True)
    mds = {"root": Metadata(root), "targets": Metadata(Targets(expires=exp)),
           "snapshot": Metadata(Snapshot(expires=exp)), "timestamp": Metadata(Timestamp(expires=exp))}
    for r, md in mds.items():
        md.sign(signers[r])
    (meta / "1.root.json").write_bytes(mds["root"].to_bytes(ser))
    (meta / "1.targets.json").write_bytes(mds["targets"].to_bytes(ser))
    (meta / "1.snapshot.json").write_bytes(mds["snapshot"].to_bytes(ser))
    (meta / "timestamp.json").write_bytes(mds["timestamp"].to_bytes(ser))
    times = []
    for k in range(ROUNDS):
        t0 = time.perf_counter()
        ts = Metadata[Timestamp].from_file(str(meta / "timestamp.json"))
        snap = Metadata[Snapshot].from_file(str(meta / f"{ts.signed.snapshot_meta.version}.snapshot.json"))
        tv = snap.signed.meta["targets.json"].version
        targets = Metadata[Targets].from_file(str(meta / f"{tv}.targets.json"))
        tf = TargetFile.from_data(f"pkg/p-{k}.bin", payload, ["sha256"])
        (base / "targets" / "pkg").mkdir(exist_ok=True)
        (base / "targets" / "pkg" / f"{tf.hashes['sha256']}.p-{k}.bin").write_bytes(payload)
        targets.signed.targets[tf.path] = tf
        targets.signed.version += 1
        targets.signatures.clear()
        targets.sign(signers["targets"])
        (meta / f"{targets.signed.version}.targets.json").write_bytes(targets.to_bytes(ser))
        snap.signed.meta["targets.json"] = MetaFile(targets.signed.version)
        snap.signed.version += 1
        snap.signatures.clear()
        snap.sign(signers["snapshot"])
        (meta / f"{snap.signed.version}.snapshot.json").write_bytes(snap.to_bytes(ser))
        ts.signed.snapshot_meta = MetaFile(snap.signed.version)
        ts.signed.version += 1
        ts.signatures.clear()
        ts.sign(signers["timestamp"])
        (meta / "timestamp.json").write_bytes(ts.to_bytes(ser))
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-release-") as d:
        tmp = Path(d)
        src = tmp / "src"
        (src / "app").mkdir(parents=True)
        (src / "app" / "hello.py").write_text("def hello():\n    return 'hi'\n")
        (src / "main.py").write_text("import app.hello\n")
        t0 = time.perf_counter()
        setup_big_repo(tmp / "wd")
        setup_s = time.perf_counter() - t0
        ours = bench_ours(tmp / "wd", src, tmp)
        payload = (tmp / "pkgs" / "model07-v1-2.0.0.mspk").read_bytes()
        anchor = bench_python_tuf(tmp / "pt", payload)
    a, b = statistics.median(ours), statistics.median(anchor)
    print(f"# setup: {MODELS * PER_MODEL} releases across {MODELS} models in {setup_s:.1f} s; median of {ROUNDS} rounds")
    print(
        f"publish 1 release into {MODELS * PER_MODEL}-release/{MODELS}-model repo: {a * 1000:.1f} ms | "
        f"anchor python-tuf minimal publish of 1 target: {b * 1000:.2f} ms | ratio {a / b:.1f}x"
    )


if __name__ == "__main__":
    main()
