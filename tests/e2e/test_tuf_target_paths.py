"""Target paths that need escaping in a URL, end to end through
`medsentry-tuf-client` on both runtimes and compared with python-tuf's
ngclient.

A target path is data from signed metadata, and a delegated role may list
any path its `paths` patterns allow (`*` matches CR, LF and spaces). Put raw
into the request line, such a path splits it (a space) or injects headers
(CR LF). The client must percent-encode it so that the mirror serves exactly
the file named by the path."""
from __future__ import annotations

from pathlib import Path

import pytest
from tuf.ngclient import Updater

from tests.e2e.tuf_client_fixtures import RUNTIMES, ok, tuf_env

# ngclient (urllib3 encodes what is invalid in a URL) downloads these too
COMMON = ["fw/my app.bin", "fw/100%.bin", "fw/x\r\nX-Injected: 1", "fw/\u00e9t\u00e9.bin"]
# urllib3 takes '?'/'#' as query/fragment and decodes '%41': ngclient asks
# for another file; a path is a path, so ours fetches them
OURS_ONLY = ["fw/a?b#c.bin", "fw/50%41.bin"]


def _content(i: int) -> bytes:
    return b"target %d\n" % i * 30


@pytest.mark.parametrize("consistent", [True, False], ids=["consistent", "plain"])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_target_paths_needing_escapes(tmp_path, runtime, consistent):
    names = COMMON + OURS_ONLY
    with tuf_env(tmp_path, runtime, consistent_snapshot=consistent) as env:
        env.repo.delegate("targets", "fw-team", paths=["fw/*"])
        for i, n in enumerate(names):
            env.repo.add_target(n, _content(i), role="fw-team")
        env.repo.publish()
        env.server.requests.clear()
        r = ok(env.client.download(*names))
        for i, n in enumerate(names):
            assert env.client.target_file(n).read_bytes() == _content(i), r.out
        # exactly the files named by the paths were asked for (the server
        # log holds the decoded request path), and nothing was injected
        asked = [p for p in env.server.requests if p.startswith("/targets/")]
        assert asked == ["/targets/" + env.repo.target_url_path(n) for n in names], r.out
        # python-tuf agrees on the paths it can fetch
        for n in COMMON:
            md, td = tmp_path / "ng-md", tmp_path / "ng-t"
            md.mkdir(exist_ok=True)
            td.mkdir(exist_ok=True)
            u = Updater(str(md), env.server.url + "/metadata/", str(td), env.server.url + "/targets/",
                        bootstrap=env.repo.root_path(1).read_bytes())
            path = u.download_target(u.get_targetinfo(n))
            assert Path(path).read_bytes() == env.client.target_file(n).read_bytes()
