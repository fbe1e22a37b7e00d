"""The Updater library API on both runtimes (what the installer uses beyond the
CLI): resumable target download (HTTP Range), the root-rotation cap and the
visited-roles cap of the delegation walk."""
from __future__ import annotations


import pytest

from host_tools import mpvm
from tests.e2e.tuf_client_fixtures import RUNTIMES, tuf_env

SCRIPT = r'''
import sys
from updater.tuf.updater import Updater, UpdaterConfig
from updater.tuf.fetcher import Fetcher
case, mdir, url, tdir = sys.argv[1:5]
if case == "resume":
    u = Updater(mdir, url + "/metadata", tdir, url + "/targets")
    info = u.get_targetinfo("fw/big.bin")
    part = tdir + "/fw%2Fbig.bin.part"
    with open(sys.argv[5], "rb") as src:
        head = src.read(3000)
    with open(part, "wb") as f:
        f.write(head)  # an interrupted earlier download
    path = u.download_target(info, resume=True)
    print("RESULT", path.split("/")[-1], u.find_cached_target(info) == path)
    # a corrupted kept prefix is detected and the .part discarded
    with open(part, "wb") as f:
        f.write(b"X" * 3000)
    try:
        u.download_target(info, resume=True)
        print("RESULT2 accepted")
    except Exception as e:
        print("RESULT2", type(e).__name__)
elif case == "rotations":
    u = Updater(mdir, url + "/metadata", config=UpdaterConfig(max_root_rotations=2))
    u.refresh()
    print("RESULT", u.trusted_versions()["root"])
elif case == "delegations":
    u = Updater(mdir, url + "/metadata", config=UpdaterConfig(max_delegations=int(sys.argv[5])))
    info = u.get_targetinfo("deep.bin")
    print("RESULT", info is not None)
'''


def _run(runtime, args, tmp):
    script = tmp / "lib_case.py"
    script.write_text(SCRIPT)
    proc = mpvm.run_on(runtime, script, *args, paths=[mpvm.REPO_ROOT], timeout=120)
    return [l for l in proc.stdout.splitlines() if l.startswith("RESULT")], proc.stdout + proc.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_resume_rotation_cap_delegation_cap(tmp_path, runtime):
    big = bytes(range(256)) * 40  # 10240 bytes
    with tuf_env(tmp_path, runtime) as env:
        env.repo.add_target("fw/big.bin", big)
        # chain targets -> d1 -> d2 -> d3 holding deep.bin
        env.repo.delegate("targets", "d1")
        env.repo.delegate("d1", "d2")
        env.repo.delegate("d2", "d3")
        env.repo.add_target("deep.bin", b"deep", role="d3")
        env.repo.publish()
        src = tmp_path / "big.bin"
        src.write_bytes(big)
        md, url, tdir = str(env.client.metadata_dir), env.server.url, str(env.client.target_dir)
        env.client.target_dir.mkdir()
        env.server.requests.clear()
        res, out = _run(runtime, ["resume", md, url, tdir, str(src)], tmp_path)
        assert res == ["RESULT fw%2Fbig.bin True", "RESULT2 LengthOrHashMismatchError"], out
        assert (env.client.target_dir / "fw%2Fbig.bin").read_bytes() == big
        assert not (env.client.target_dir / "fw%2Fbig.bin.part").exists()
        # the visited-roles cap: 4 roles walked are needed
        res, out = _run(runtime, ["delegations", md, url, tdir, "2"], tmp_path)
        assert res == ["RESULT False"], out
        res, out = _run(runtime, ["delegations", md, url, tdir, "3"], tmp_path)
        assert res == ["RESULT True"], out
        # three new roots, at most two rotations per refresh
        for _ in range(3):
            env.repo.publish_root()
        res, out = _run(runtime, ["rotations", md, url, tdir], tmp_path)
        assert res == ["RESULT 3"], out
        res, out = _run(runtime, ["rotations", md, url, tdir], tmp_path)
        assert res == ["RESULT 4"], out


LIST_SCRIPT = r'''
import sys
from updater.tuf.updater import Updater
mdir, url = sys.argv[1:3]
u = Updater(mdir, url + "/metadata")
for prefix in sys.argv[3:]:
    print("LIST", prefix, ",".join(u.list_targets(prefix)))
'''


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_list_targets(tmp_path, runtime):
    with tuf_env(tmp_path, runtime) as env:
        env.repo.add_target("pump-x/1.0.mspk", b"a")
        env.repo.add_target("monitor/1.0.mspk", b"b")
        env.repo.delegate("targets", "pump-team", paths=["pump-x/*"])
        env.repo.delegate("targets", "monitor-team", paths=["monitor/*"])
        env.repo.add_target("pump-x/2.0.mspk", b"c", role="pump-team")
        env.repo.add_target("monitor/2.0.mspk", b"d", role="monitor-team")
        env.repo.publish()
        script = tmp_path / "list.py"
        script.write_text(LIST_SCRIPT)
        args = [str(env.client.metadata_dir), env.server.url, "pump-x/", "monitor/", "none/"]
        env.server.requests.clear()
        proc = mpvm.run_on(runtime, script, *args, paths=[mpvm.REPO_ROOT], timeout=120)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("LIST")]
        assert lines == [
            "LIST pump-x/ pump-x/1.0.mspk,pump-x/2.0.mspk",
            "LIST monitor/ monitor/1.0.mspk,monitor/2.0.mspk",
            "LIST none/ ",
        ], proc.stdout + proc.stderr
