"""The device client within its heap: a refresh with metadata close to the
default size caps (snapshot 16 KiB, targets 32 KiB) succeeds on the
MicroPython VM at 256 KiB heap, and metadata over a cap is refused while
streaming (never parsed)."""
from __future__ import annotations

from tuf.api.metadata import MetaFile

from tests.e2e.tuf_client_fixtures import fails, ok, tuf_env


def _fill(repo, targets_bytes: int, snapshot_bytes: int) -> None:
    i = 0
    while True:
        repo.add_target(f"firmware/pkg/component-{i:05d}.mpy", b"x%d" % i)
        i += 1
        if i % 10 == 0:
            repo.publish()
            if repo.metadata_path("targets").stat().st_size > targets_bytes - 2000:
                break
    j = 0
    while repo.metadata_path("snapshot").stat().st_size < snapshot_bytes - 600:
        for _ in range(10):
            repo.md["snapshot"].signed.meta[f"extra-role-{j:05d}.json"] = MetaFile(1)
            j += 1
        repo.publish()


def test_refresh_at_size_caps_fits_256k(tmp_path):
    with tuf_env(tmp_path, "micropython", consistent_snapshot=False) as env:
        _fill(env.repo, 32768, 16384)
        assert 30000 < env.repo.metadata_path("targets").stat().st_size <= 32768
        assert 15000 < env.repo.metadata_path("snapshot").stat().st_size <= 16384
        r = ok(env.client.download("firmware/pkg/component-00007.mpy"))  # default heap: 256k
        assert "download: firmware/pkg/component-00007.mpy ok" in r.out
        # one more batch of targets pushes targets.json over its 32 KiB cap
        for k in range(30):
            env.repo.add_target(f"firmware/more/extra-{k:04d}.mpy", b"y")
        env.repo.publish()
        assert env.repo.metadata_path("targets").stat().st_size > 32768
        fails(env.client.refresh(), "DownloadLengthMismatchError", "targets.json")
