"""Resumable target download (Updater.download_target(resume=True)) must
never wedge: whatever an interrupted earlier attempt left in the ".part"
file, the next attempts end with the verified target. Library API on both
runtimes against the loopback repository server."""
from __future__ import annotations


import pytest

from host_tools import mpvm
from tests.e2e.tuf_client_fixtures import RUNTIMES, tuf_env

SCRIPT = r'''
import sys
from updater.tuf.updater import Updater
mdir, url, tdir, src = sys.argv[1:5]
with open(src, "rb") as f:
    data = f.read()
part = tdir + "/fw%2Fbig.bin.part"
final = tdir + "/fw%2Fbig.bin"
u = Updater(mdir, url + "/metadata", tdir, url + "/targets")
info = u.get_targetinfo("fw/big.bin")

def same(path):
    # Compared 1 KiB at a time: a whole-file read needs 10 KiB of contiguous
    # heap, which a 256 KiB VM that compiled the crypto from source may lack.
    mv = memoryview(data)
    pos = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1024)
            if not chunk:
                return pos == len(data)
            if bytes(mv[pos:pos + len(chunk)]) != chunk:
                return False
            pos += len(chunk)


def attempt(label, prefix):
    import os
    try:
        os.remove(final)
    except OSError:
        pass
    if prefix is not None:
        with open(part, "wb") as f:
            f.write(prefix)
    out = []
    for i in range(2):  # a failed attempt may be followed by one retry
        try:
            p = u.download_target(info, resume=True)
            out.append("ok" if same(p) else "WRONG")
            break
        except Exception as e:
            out.append(type(e).__name__)
    try:
        open(part, "rb").close()
        out.append("part-left")
    except OSError:
        pass
    print("RESULT", label, " ".join(out))
    sys.stdout.flush()

attempt("complete", data)                       # cut after the last byte
attempt("complete_corrupt", b"X" * len(data))  # right length, wrong bytes
attempt("too_long", data + b"extra")           # more than the target
attempt("prefix", data[:3000])                 # the ordinary case
'''


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_resume_never_wedges(tmp_path, runtime):
    big = bytes(range(256)) * 40  # 10240 bytes
    with tuf_env(tmp_path, runtime) as env:
        env.repo.add_target("fw/big.bin", big)
        env.repo.publish()
        src = tmp_path / "big.bin"
        src.write_bytes(big)
        env.client.target_dir.mkdir()
        script = tmp_path / "resume.py"
        script.write_text(SCRIPT)
        args = [str(env.client.metadata_dir), env.server.url, str(env.client.target_dir), str(src)]
        env.server.requests.clear()
        proc = mpvm.run_on(runtime, script, *args, paths=[mpvm.REPO_ROOT], timeout=120)
        res = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")]
        out = proc.stdout + proc.stderr
        assert res == [
            # all bytes already there: verified and kept, nothing fetched
            "RESULT complete ok",
            # a bad kept file is reported once and discarded; the retry works
            "RESULT complete_corrupt LengthOrHashMismatchError ok",
            "RESULT too_long LengthOrHashMismatchError ok",
            "RESULT prefix ok",
        ], out
        ranges = [r for _p, r in env.server.range_requests]
        # the complete file caused no request; the resumed prefix used Range
        assert ranges == ["bytes=3000-"], (ranges, out)
