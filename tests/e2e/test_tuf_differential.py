"""Differential test: python-tuf's ngclient.Updater and our device client
(on the MicroPython VM, through `medsentry-tuf-client`) walk the same
repository history, attacks included, and must reach the same accept/reject
decision at every step and keep the same trusted metadata versions."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from tuf.api import exceptions as tuf_exc
from tuf.ngclient import Updater

from tests.e2e.conftest_tuf import tuf_env, tuf_repo

FW = b"firmware one\n" * 50
FW2 = b"firmware two\n" * 50


def _ngclient(md_dir: Path, tdir: Path, url: str, names: list[str], bootstrap: bytes | None) -> bool:
    try:
        u = Updater(str(md_dir), url + "/metadata/", str(tdir), url + "/targets/", bootstrap=bootstrap)
        u.refresh()
        for n in names:
            info = u.get_targetinfo(n)
            if info is None:
                return False
            if u.find_cached_target(info) is None:
                u.download_target(info)
        return True
    except (tuf_exc.RepositoryError, tuf_exc.DownloadError):
        return False


def _versions(md_dir: Path) -> dict[str, int]:
    out = {}
    for role in ("root", "timestamp", "snapshot", "targets"):
        f = md_dir / f"{role}.json"
        if f.exists():
            out[role] = json.loads(f.read_bytes())["signed"]["version"]
    return out


# Each step mutates the repository or the server; both clients then run
# "refresh + download these targets" and are compared.
def s_initial(env):
    env.repo.add_target("fw/app.bin", FW)
    env.repo.publish()
    env.saved["old_ts"] = (env.repo.metadata_dir / "timestamp.json").read_bytes()


def s_new_release(env):
    env.repo.add_target("fw/app.bin", FW2)
    env.repo.publish()


def s_rollback_timestamp(env):
    env.server.misbehave("/metadata/timestamp.json", "replace", data=env.saved.pop("old_ts"))


def s_root_rotation(env):
    env.repo.rotate("root", nkeys=2, threshold=2)
    env.repo.publish_root()
    env.repo.publish()


def s_expired_timestamp(env):
    env.repo.set_expiry("timestamp", dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=5))
    env.repo.publish()


def s_fixed_expiry(env):
    env.repo.set_expiry("timestamp", dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(days=1))
    env.repo.publish()


def s_fast_forward(env):
    ts = env.repo.md["timestamp"].signed
    env.saved["ts_version"] = ts.version
    ts.version = 999
    env.repo.write_metadata("timestamp", env.repo.sign_bytes("timestamp"))


def s_legit_after_ff_no_rotation(env):
    env.repo.md["timestamp"].signed.version = env.saved["ts_version"]
    env.repo.publish()


def s_recover_rotate_timestamp(env):
    env.repo.rotate("timestamp")
    env.repo.publish_root()
    env.repo.publish()


def s_tampered_target(env):
    env.repo.add_target("fw/app.bin", FW)
    env.repo.publish()
    env.server.misbehave("/targets/" + env.repo.target_url_path("fw/app.bin"), "replace", data=FW2)


def s_delegation(env):
    env.repo.delegate("targets", "pump", paths=["pump/*"], terminating=True)
    env.repo.add_target("pump/fw.bin", FW2, role="pump")
    env.repo.publish()
    env.names.append("pump/fw.bin")


def s_delegated_wrong_key(env):
    md = env.repo.md["pump"]
    md.signed.version += 1
    md.signed.targets.clear()
    md.signed.targets["pump/fw.bin"] = tuf_repo.TargetFile.from_data("pump/fw.bin", b"evil")
    data = env.repo.sign_bytes("pump", [tuf_repo.new_signer()])
    env.repo.write_metadata("pump", data, md.signed.version)
    env.repo._update_snapshot_meta("pump")
    env.repo.publish()


def s_fix_delegated(env):
    env.repo.add_target("pump/fw.bin", FW2, role="pump")
    env.repo.publish()


def s_root_only_new_keys(env):
    env.repo.rotate("root")
    env.repo._prev_root_signers = []
    env.repo.publish_root()


STEPS = [
    ("initial", s_initial, True),
    ("new_release", s_new_release, True),
    ("rollback_timestamp", s_rollback_timestamp, False),
    ("root_rotation", s_root_rotation, True),
    ("expired_timestamp", s_expired_timestamp, False),
    ("fixed_expiry", s_fixed_expiry, True),
    ("fast_forward", s_fast_forward, True),
    ("legit_after_ff_no_rotation", s_legit_after_ff_no_rotation, False),
    ("recover_rotate_timestamp", s_recover_rotate_timestamp, True),
    ("tampered_target", s_tampered_target, False),
    ("delegation", s_delegation, True),
    ("delegated_wrong_key", s_delegated_wrong_key, False),
    ("fix_delegated", s_fix_delegated, True),
    ("root_only_new_keys", s_root_only_new_keys, False),
]


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_same_decisions_as_python_tuf(tmp_path, runtime):
    with tuf_env(tmp_path, runtime, consistent_snapshot=True) as env:
        env.saved = {}
        env.names = ["fw/app.bin"]
        ng_md = tmp_path / "ng" / "metadata"
        ng_md.mkdir(parents=True)
        ng_t = tmp_path / "ng" / "targets"
        ng_t.mkdir()
        bootstrap: bytes | None = env.repo.root_path(1).read_bytes()
        log = []
        for name, step, expected in STEPS:
            env.server.reset()
            step(env)
            ng_ok = _ngclient(ng_md, ng_t, env.server.url, env.names, bootstrap)
            bootstrap = None
            r = env.client.download(*env.names)
            ours_ok = r.code == 0
            ours_v, ng_v = env.client.trusted_versions(), _versions(ng_md)
            log.append((name, ng_ok, ours_ok, ng_v, ours_v))
            assert ng_ok == ours_ok, f"step {name}: python-tuf {ng_ok}, ours {ours_ok}\n{r.out}\n{log}"
            assert ng_ok == expected, f"step {name}: expected {expected}\n{log}"
            assert ours_v == ng_v, f"step {name}: versions differ\n{log}\n{r.out}"
            for n in env.names if ours_ok else []:
                assert env.client.target_file(n).read_bytes() == (ng_t / n.replace("/", "%2F")).read_bytes()
