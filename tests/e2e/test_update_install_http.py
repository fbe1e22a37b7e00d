"""The installer against a real loopback HTTP server that misbehaves, on the
MicroPython VM with the device fetcher: a short body (Content-Length shorter
than the TUF-signed length) is a transport failure to retry, not a bad
package; wrong bytes answering a Range request are rejected as bad data and
the retry from a good server completes (nothing bad is resumed from)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from host_tools import mpvm

HOST_DIR = Path(__file__).resolve().parents[1] / "host"
if str(HOST_DIR) not in sys.path:
    sys.path.insert(0, str(HOST_DIR))
from tuf_repo import serve  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "device" / "data" / "install"
INDEX = json.loads((DATA / "index.json").read_text())

SCRIPT = r'''
import sys, os
from updater.tuf.fetcher import Fetcher, TargetStream
from updater.install.installer import Installer
from updater.install.source import HttpSource
root, url, length, sha = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
m = {}
for name in ("state", "slot_a", "slot_b", "data"):
    m[name] = root + "/" + name
    try:
        os.mkdir(m[name])
    except OSError:
        pass
src = HttpSource(TargetStream(Fetcher(read_timeout=5, connect_timeout=5), url, length))
try:
    man = Installer(m, "pump-v2").install(src, "pump-v2/pump-1.1.0.mspk", sha)
    print("RESULT ok", man["version"], src.downloaded)
except Exception as e:
    print("RESULT err", type(e).__name__, src.downloaded, e)
'''


def _run(tmp: Path, url: str) -> list[str]:
    script = tmp / "install_http.py"
    script.write_text(SCRIPT)
    ix = INDEX["pump-1.1.0"]
    proc = mpvm.run_script(script, str(tmp / "dev"), url, str(ix["length"]), ix["manifest_sha256"],
                           paths=[mpvm.REPO_ROOT], timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.split("RESULT ", 1)[1].split()


def test_short_body_is_a_transport_failure_then_resumes(tmp_path):
    served = tmp_path / "srv"
    served.mkdir()
    (tmp_path / "dev").mkdir()
    good = (DATA / "pump-1.1.0.mspk").read_bytes()
    (served / "p.mspk").write_bytes(good)
    with serve(served) as srv:
        url = srv.url + "/p.mspk"
        ix = INDEX["pump-1.1.0"]
        srv.misbehave("/p.mspk", "replace", data=good[: ix["data_offset"] + 900])
        out = _run(tmp_path, url)
        assert out[:2] == ["err", "DownloadLengthMismatchError"], out
        srv.reset()
        out = _run(tmp_path, url)
        assert out[:2] == ["ok", "1.1.0"], out
        # The retry asked for the rest of the blob it had started.
        assert any(r[1] == "bytes=%d-" % (ix["data_offset"] + 900) for r in srv.range_requests), srv.range_requests


def test_wrong_bytes_for_a_range_are_rejected_and_not_resumed_from(tmp_path):
    served = tmp_path / "srv"
    served.mkdir()
    (tmp_path / "dev").mkdir()
    good = (DATA / "pump-1.1.0.mspk").read_bytes()
    ix = INDEX["pump-1.1.0"]
    # First a transfer that stops inside lib/blob.bin ...
    (served / "p.mspk").write_bytes(good)
    with serve(served) as srv:
        url = srv.url + "/p.mspk"
        srv.misbehave("/p.mspk", "replace", data=good[: ix["data_offset"] + 900])
        out = _run(tmp_path, url)
        assert out[:2] == ["err", "DownloadLengthMismatchError"], out
        # ... then a mirror that answers the Range request with the right
        # Content-Range but wrong bytes.
        srv.reset()
        bad = bytearray(good)
        for k in range(ix["data_offset"] + 1000, ix["data_offset"] + 1100):
            bad[k] ^= 0x55
        (served / "p.mspk").write_bytes(bytes(bad))
        out = _run(tmp_path, url)
        assert out[:2] == ["err", "TransferError"], out
        # The good server again: the install completes.
        shutil.copy(DATA / "pump-1.1.0.mspk", served / "p.mspk")
        out = _run(tmp_path, url)
        assert out[:2] == ["ok", "1.1.0"], out
