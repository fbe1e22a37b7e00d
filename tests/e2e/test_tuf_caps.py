"""Size caps of the device TUF client set from the command line
(`medsentry-tuf-client --max-root-length/--max-timestamp-length/
--max-snapshot-length/--max-targets-length`), on both runtimes."""
from __future__ import annotations

import pytest

from tests.e2e.tuf_client_fixtures import RUNTIMES, fails, ok, tuf_env

DEFAULT_TARGETS_CAP = 32768  # UpdaterConfig.targets_max_length


def _big_targets(repo, n: int = 300) -> None:
    for i in range(n):
        repo.add_target(f"files/part-{i:04d}.bin", b"%d" % i)
    repo.add_target("fw/app.bin", b"firmware\n" * 20)
    repo.publish()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_large_targets_needs_larger_cap(tmp_path, runtime):
    with tuf_env(tmp_path, runtime, consistent_snapshot=False) as env:
        _big_targets(env.repo)
        size = (env.repo.metadata_dir / "targets.json").stat().st_size
        assert DEFAULT_TARGETS_CAP < size < 200000, size
        # default cap: refused while streaming, nothing trusted or stored
        fails(env.client.download("fw/app.bin"), "download", "32768")
        assert not (env.client.metadata_dir / "targets.json").exists()
        # larger cap (and heap): accepted
        c = env.client
        r = c.run(*c._net(), "--max-targets-length", "200000", "--heap", "1024k", "--target-name", "fw/app.bin",
                  "--target-base-url", env.server.url + "/targets", "--target-dir", str(c.target_dir), "download")
        ok(r)
        assert c.target_file("fw/app.bin").read_bytes() == b"firmware\n" * 20
        assert (c.metadata_dir / "targets.json").stat().st_size == size


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_each_cap_reaches_the_client(tmp_path, runtime):
    with tuf_env(tmp_path, runtime, consistent_snapshot=False) as env:
        env.repo.rotate("timestamp")
        env.repo.publish_root()
        env.repo.publish()
        c = env.client
        sizes = {r: (env.repo.metadata_dir / f"{r}.json").stat().st_size for r in ("root", "timestamp", "snapshot")}
        for role, size in sizes.items():
            fails(c.run(*c._net(), f"--max-{role}-length", str(size - 1), "refresh"), "download", str(size - 1))
            v = c.trusted_versions()
            assert (v["root"] == 1) if role == "root" else (role not in v), (role, v)
        ok(c.run(*c._net(), *[a for r, s in sizes.items() for a in (f"--max-{r}-length", str(s))], "refresh"))
        assert c.trusted_versions() == {"root": 2, "timestamp": 2, "snapshot": 2, "targets": 1}


@pytest.mark.parametrize("bad", [["--max-targets-length", "0"], ["--max-root-length", "x"], ["--envelope-type", "dsse"]])
def test_bad_option_values(tmp_path, bad):
    with tuf_env(tmp_path, "micropython") as env:
        c = env.client
        r = c.run(*c._net(), *bad, "refresh")
        assert r.code == 1
        assert c.trusted_versions() == {"root": 1}
