"""The published repository, followed by python-tuf's ngclient over loopback HTTP:
publish, recall, key rotation (root and online roles), model delegation, expiry."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Metadata

sys.path.insert(0, str(Path(__file__).parent))
from test_release_support import NgClient, forge_role_with_target, make_workdir, past, served  # noqa: E402

from host_tools.release.config import ReleaseConfig  # noqa: E402
from host_tools.release.errors import RepositoryError  # noqa: E402
from host_tools.release.keys import KeyStore  # noqa: E402
from host_tools.release.layout import Layout  # noqa: E402
from host_tools.release.publish import list_releases, publish_package  # noqa: E402
from host_tools.release.recall import recall_release  # noqa: E402
from host_tools.release.refresh import refresh  # noqa: E402
from host_tools.release.rotate import rotate_key  # noqa: E402
from host_tools.release.roles.repository import ReleaseRepository  # noqa: E402

PUMP1 = "pump-v2/pump-v2-1.0.0.mspk"


@pytest.fixture
def env(tmp_path):
    return make_workdir(tmp_path)


def publish(env, version, counter, model="pump-v2", channel="stable", **kw):
    pkg = env.build(version, counter, model=model, **kw)
    with env.session() as s:
        return publish_package(s, pkg, channel), pkg


def test_every_published_state_is_accepted_by_ngclient(env, tmp_path):
    client = NgClient(tmp_path / "client", env.root1())
    with served(env) as url:
        u = client.refresh(url)  # empty models
        assert u.get_targetinfo(PUMP1) is None
        rel, pkg = publish(env, "1.0.0", 1)
        assert client.fetch(url, PUMP1) == pkg.read_bytes()
        rel2, pkg2 = publish(env, "1.1.0", 2, channel="canary", variant="b")
        u = client.refresh(url)
        info = u.get_targetinfo("pump-v2/pump-v2-1.1.0.mspk")
        assert info.custom["version"] == "1.1.0" and info.custom["channel"] == "canary"
        assert info.custom["security_counter"] == 2 and info.custom["model"] == "pump-v2"
        assert Path(u.download_target(info)).read_bytes() == pkg2.read_bytes()
        sbom = client.fetch(url, "pump-v2/pump-v2-1.1.0.cdx.json")
        assert json.loads(sbom)["bomFormat"] == "CycloneDX"
        _, mon = publish(env, "3.0.0", 7, model="monitor-v1")
        assert client.fetch(url, "monitor-v1/monitor-v1-3.0.0.mspk") == mon.read_bytes()
    # consistent snapshots: versioned metadata and hash-prefixed targets on disk
    meta = env.repository / "metadata"
    assert json.loads((meta / "1.root.json").read_text())["signed"]["consistent_snapshot"] is True
    assert (env.repository / "targets" / "pump-v2" / f"{rel.sha256}.pump-v2-1.0.0.mspk").exists()
    snap = Metadata.from_file(str(meta / f"{json.loads((meta / 'timestamp.json').read_text())['signed']['meta']['snapshot.json']['version']}.snapshot.json"))
    assert set(snap.signed.meta) == {"targets.json", "pump-v2.json", "monitor-v1.json"}


def test_ecdsa_keys_work_end_to_end(tmp_path):
    env = make_workdir(tmp_path, models=("pump-v2",), config=ReleaseConfig(key_type="ecdsa"))
    root = json.loads(env.root1().read_text())
    assert {k["scheme"] for k in root["signed"]["keys"].values()} == {"ecdsa-sha2-nistp256"}
    publish(env, "1.0.0", 1)
    with served(env) as url:
        assert NgClient(tmp_path / "c", env.root1()).fetch(url, PUMP1) is not None


def test_recall_is_followed_by_ngclient(env, tmp_path):
    client = NgClient(tmp_path / "client", env.root1())
    publish(env, "1.0.0", 1)
    publish(env, "1.1.0", 2, variant="b")
    with served(env) as url:
        assert client.fetch(url, "pump-v2/pump-v2-1.1.0.mspk") is not None
        with env.session() as s:
            recall_release(s, "1.1.0", "occlusion alarm suppressed")
        u = client.refresh(url)
        assert u.get_targetinfo("pump-v2/pump-v2-1.1.0.mspk") is None
        assert u.get_targetinfo("pump-v2/pump-v2-1.1.0.cdx.json") is None
        assert u.get_targetinfo(PUMP1) is not None
        doc = json.loads(client.fetch(url, "pump-v2/recalls.json"))
    assert doc["model"] == "pump-v2"
    [entry] = doc["recalled"]
    assert entry["version"] == "1.1.0" and entry["reason"] == "occlusion alarm suppressed"
    assert entry["security_counter"] == 2
    local = json.loads((env.workdir / "release" / "recalls.json").read_text())
    assert local["recalls"][0]["model"] == "pump-v2" and local["recalls"][0]["version"] == "1.1.0"
    with env.session() as s:
        states = {r.version: r.status for r in list_releases(s)}
    assert states == {"1.0.0": "published", "1.1.0": "recalled"}


@pytest.mark.parametrize("role", ["root", "targets", "snapshot", "timestamp", "pump-v2"])
def test_key_rotation_is_followed_by_ngclient(env, tmp_path, role):
    client = NgClient(tmp_path / "client", env.root1())
    publish(env, "1.0.0", 1)
    with served(env) as url:
        client.refresh(url)
        with env.session() as s:
            old = s.repo.role_keys(role)[0]
            result = rotate_key(s, role)
        assert set(result.old_keyids) == set(old) and not set(result.new_keyids) & set(old)
        # the next release is signed with the new key, and the client follows
        _, pkg = publish(env, "1.1.0", 2, variant="b")
        assert client.fetch(url, "pump-v2/pump-v2-1.1.0.mspk") == pkg.read_bytes()
        u = client.refresh(url)
        expected_root = 2 if role in ("root", "targets", "snapshot", "timestamp") else 1
        assert u._trusted_set.root.version == expected_root
    with env.session() as s:
        assert set(s.repo.role_keys(role)[0]) == set(result.new_keyids)
        # old key files are retired, not deleted
        assert not any(s.keystore.has_key(k) for k in old)
    retired = list((env.workdir / "keys" / "retired").glob("*.pem"))
    assert len(retired) == len(old)


def test_root_rotation_of_one_key_and_chain_of_two(env, tmp_path):
    client = NgClient(tmp_path / "client", env.root1())
    with served(env) as url:
        with env.session() as s:
            rotate_key(s, "root", replace=["root-2"])
        with env.session() as s:
            rotate_key(s, "root")
        u = client.refresh(url)
        assert u._trusted_set.root.version == 3
    with env.session() as s:
        # every root in the chain verified on load (old + new thresholds)
        assert [r.signed.version for r in s.repo.root_history] == [1, 2, 3]


def test_expiry_then_refresh_is_followed_by_ngclient(env, tmp_path):
    client = NgClient(tmp_path / "client", env.root1())
    # publish "three days ago": timestamp (1 d) has expired, snapshot (7 d) has not
    pkg = env.build("1.0.0", 1)
    with env.session(now=past(days=3)) as s:
        publish_package(s, pkg)
    with served(env) as url:
        with pytest.raises(tuf_exc.ExpiredMetadataError):
            client.refresh(url)
        with env.session() as s:
            result = refresh(s)
        assert set(result.resigned) == {"timestamp"}
        assert client.fetch(url, PUMP1) == pkg.read_bytes()
    # a release signed eight days ago: snapshot (7 d) expired too; refresh
    # re-signs what is due and the client follows
    pkg2 = env.build("1.1.0", 2, variant="b")
    with env.session(now=past(days=8)) as s:
        publish_package(s, pkg2)
    with served(env) as url:
        with pytest.raises(tuf_exc.ExpiredMetadataError):
            client.refresh(url)
        with env.session() as s:
            result = refresh(s)
        assert {"snapshot", "timestamp"} <= set(result.resigned)
        assert client.fetch(url, "pump-v2/pump-v2-1.1.0.mspk") == pkg2.read_bytes()


def test_refresh_is_idempotent_and_needs_only_the_timestamp_key(env):
    with env.session() as s:
        v0 = s.repo.md("timestamp").signed.version
    env.pw.current = {"timestamp": env.pw.current["timestamp"]}  # cron has only this one
    for i in range(2):
        with env.session() as s:
            refresh(s)
    with env.session() as s:
        assert s.repo.md("timestamp").signed.version == v0 + 2


def test_pump_key_signature_on_monitor_target_is_rejected(env, tmp_path):
    publish(env, "1.0.0", 1)
    client = NgClient(tmp_path / "client", env.root1())
    with env.session() as s:
        pump_keyid = s.repo.role_keys("pump-v2")[0][0]
        # the library itself refuses to sign monitor-v1 with the pump key
        s.repo.signer_override["monitor-v1"] = [s.keystore.signer(pump_keyid, "pump-v2")]
        with pytest.raises(RepositoryError, match="threshold"):
            with s.repo.edit_targets("monitor-v1"):
                pass
    target = "monitor-v1/monitor-v1-9.9.9.mspk"
    forge_role_with_target(env, "monitor-v1", target, b"evil firmware", pump_keyid)
    with served(env) as url:
        u = client.refresh(url)  # top-level metadata is fine
        with pytest.raises(tuf_exc.UnsignedMetadataError):
            u.get_targetinfo(target)
        assert client.fetch(url, PUMP1) is not None  # pump role unaffected
    with env.session() as s:
        # publishing for the pump still works (its own role verifies) ...
        publish_package(s, env.build("1.1.0", 2, variant="b"))
    with pytest.raises(RepositoryError, match="does not verify: monitor-v1"):
        with env.session() as s:
            list_releases(s)  # ... but nothing built on the forged monitor role


def test_pump_role_cannot_list_monitor_targets(env, tmp_path):
    publish(env, "1.0.0", 1)
    client = NgClient(tmp_path / "client", env.root1())
    with env.session() as s:
        pump_keyid = s.repo.role_keys("pump-v2")[0][0]
    target = "monitor-v1/monitor-v1-9.9.9.mspk"
    # validly signed by the pump key, listed in the pump role
    forge_role_with_target(env, "pump-v2", target, b"evil firmware", pump_keyid)
    with served(env) as url:
        u = client.refresh(url)
        assert u.get_targetinfo(target) is None  # paths "pump-v2/*" do not cover it
        assert u.get_targetinfo(PUMP1) is not None


def test_delegations_are_per_model_with_paths_and_terminating(env):
    with env.session() as s:
        roles = s.repo.md("targets").signed.delegations.roles
        assert list(roles) == ["pump-v2", "monitor-v1"]
        for name, role in roles.items():
            assert role.paths == [f"{name}/*"] and role.terminating and role.threshold == 1
        assert set(roles["pump-v2"].keyids).isdisjoint(roles["monitor-v1"].keyids)


def test_loader_rejects_tampered_metadata(env):
    meta = env.repository / "metadata"
    ts = json.loads((meta / "timestamp.json").read_text())
    ts["signed"]["version"] += 5
    (meta / "timestamp.json").write_text(json.dumps(ts))
    with pytest.raises(RepositoryError, match="does not verify"):
        ReleaseRepository.load(Layout.of(env.workdir), ReleaseConfig(), KeyStore(Layout.of(env.workdir), env.pw))


def test_publish_writes_targets_first_and_timestamp_last(env, monkeypatch):
    import host_tools.release.journal as repo_mod

    order: list[str] = []
    real = repo_mod.write_atomic

    def record(path, data, mode=0o644):
        if env.repository in path.parents:  # the journal itself lands first, outside
            order.append(str(path.relative_to(env.repository)))
        return real(path, data, mode)

    monkeypatch.setattr(repo_mod, "write_atomic", record)
    publish(env, "1.0.0", 1)
    assert order[-1] == "metadata/timestamp.json"
    assert [p.split("/")[0] for p in order[:2]] == ["targets", "targets"]
    names = [p.split("/", 1)[1] for p in order[2:-1]]
    assert [n.split(".", 1)[1] for n in names] == ["pump-v2.json", "snapshot.json"]
    # nothing but the timestamp is ever overwritten: every other name is new
    assert all(not p.startswith("metadata/timestamp") for p in order[:-1])
