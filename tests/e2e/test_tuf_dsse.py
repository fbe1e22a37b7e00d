"""DSSE envelopes (python-tuf's tuf.api.dsse.SimpleEnvelope) end to end
through `medsentry-tuf-client --envelope-type simple` on both runtimes, and
a differential run against python-tuf's ngclient configured with
envelope_type=SIMPLE on the same repository sequence."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import UpdaterConfig
from tuf.ngclient.config import EnvelopeType

from tests.e2e.tuf_client_fixtures import RUNTIMES, Client, Result, fails, ok, run_differential, tuf_env, tuf_repo

FW = b"dsse firmware image\n" * 40
FW2 = b"dsse firmware two\n" * 40


class DsseClient(Client):
    """The CLI client with --envelope-type simple (or another value)."""

    envelope = "simple"

    def run(self, *args: str, timeout: float = 90) -> Result:
        return super().run("--envelope-type", self.envelope, *args, timeout=timeout)


def dsse_env(tmp_path: Path, runtime: str, envelope: str = "simple", **kw):
    """tuf_env over a DSSE repository, with a DsseClient initialised."""
    kw.setdefault("envelope", "simple")
    cm = tuf_env(tmp_path, runtime, init=False, **kw)
    env = cm.__enter__()
    c = DsseClient(tmp_path / "device", env.server, runtime)
    c.envelope = envelope
    env.client = c
    return cm, env


def _traditional(repo, role: str) -> bytes:
    md = Metadata(repo.md[role].signed)
    for s in repo.signers[role]:
        md.sign(s, append=True)
    return md.to_bytes(JSONSerializer())


# ------------------------------------------------------------ scenarios
def sc_download(env):
    ok(env.client.init(env.repo.root_path(1)))
    env.repo.delegate("targets", "pump", paths=["pump/*"], key_type="ecdsa")
    env.repo.add_target("fw/app.bin", FW)
    env.repo.add_target("pump/fw.bin", FW2, role="pump")
    env.repo.publish()
    r = ok(env.client.download("fw/app.bin", "pump/fw.bin"))
    assert env.client.target_file("fw/app.bin").read_bytes() == FW
    assert env.client.target_file("pump/fw.bin").read_bytes() == FW2
    assert env.client.trusted_versions() == {"root": 1, "timestamp": 2, "snapshot": 2, "targets": 2}, r.out
    # stored metadata is the DSSE envelope as served
    assert b'"payloadType"' in (env.client.metadata_dir / "timestamp.json").read_bytes()
    # root rotation (new root signed by old and new keys) and a new release
    env.repo.rotate("root", nkeys=2, threshold=2, key_type="rsa")
    env.repo.publish_root()
    env.repo.add_target("fw/app.bin", FW2)
    env.repo.publish()
    ok(env.client.download("fw/app.bin"))
    assert env.client.target_file("fw/app.bin").read_bytes() == FW2
    assert env.client.trusted_versions()["root"] == 2


def sc_bad_signature(env):
    ok(env.client.init(env.repo.root_path(1)))
    env.repo.md["timestamp"].signed.version += 1
    env.repo.write_metadata("timestamp", env.repo.sign_bytes("timestamp", [tuf_repo.new_signer()]))
    fails(env.client.refresh(), "UnsignedMetadataError", "timestamp")
    assert env.client.trusted_versions() == {"root": 1}


def sc_tampered_payload(env):
    # A valid signature over the old payload; the payload was changed.
    import base64
    import json

    ok(env.client.init(env.repo.root_path(1)))
    d = json.loads((env.repo.metadata_dir / "timestamp.json").read_bytes())
    payload = json.loads(base64.b64decode(d["payload"]))
    payload["version"] += 10
    d["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    env.repo.write_metadata("timestamp", json.dumps(d).encode())
    fails(env.client.refresh(), "UnsignedMetadataError")


def sc_wrong_payload_type(env):
    # Signed by the right key, but over another payload type.
    ok(env.client.init(env.repo.root_path(1)))
    env.repo.md["timestamp"].signed.version += 1
    env.repo.write_metadata("timestamp", env.repo.envelope_bytes("timestamp", payload_type="application/json"))
    fails(env.client.refresh(), "FormatError", "payloadType")


def sc_metadata_file_to_dsse_client(env):
    # A correctly signed traditional timestamp is not accepted by a DSSE client,
    # nor is a traditional root at init.
    ok(env.client.init(env.repo.root_path(1)))
    env.repo.md["timestamp"].signed.version += 1
    env.repo.write_metadata("timestamp", _traditional(env.repo, "timestamp"))
    fails(env.client.refresh(), "FormatError", "traditional")
    c2 = DsseClient(env.tmp / "dev2", env.server, env.client.runtime)
    root_md = env.tmp / "root-metadata.json"
    root_md.write_bytes(_traditional(env.repo, "root"))
    fails(c2.init(root_md), "FormatError")
    assert not (c2.metadata_dir / "root.json").exists()


def sc_dsse_file_to_metadata_client(env):
    # Traditional client (default) against the DSSE repository.
    fails(env.client.init(env.repo.root_path(1)), "FormatError", "DSSE")
    root_md = env.tmp / "root-metadata.json"
    root_md.write_bytes(_traditional(env.repo, "root"))
    ok(env.client.init(root_md))
    fails(env.client.refresh(), "FormatError", "DSSE")


SCENARIOS = {
    "download": (sc_download, "simple"),
    "bad_signature": (sc_bad_signature, "simple"),
    "tampered_payload": (sc_tampered_payload, "simple"),
    "wrong_payload_type": (sc_wrong_payload_type, "simple"),
    "metadata_file_to_dsse_client": (sc_metadata_file_to_dsse_client, "simple"),
    "dsse_file_to_metadata_client": (sc_dsse_file_to_metadata_client, "metadata"),
}


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_dsse_scenario(tmp_path, name, runtime):
    fn, envelope = SCENARIOS[name]
    cm, env = dsse_env(tmp_path, runtime, envelope, consistent_snapshot=name != "download")
    try:
        fn(env)
    finally:
        cm.__exit__(None, None, None)


# ------------------------------------------------------------ differential
def d_initial(env):
    env.repo.add_target("fw/app.bin", FW)
    env.repo.publish()
    env.saved["old_ts"] = (env.repo.metadata_dir / "timestamp.json").read_bytes()


def d_new_release(env):
    env.repo.add_target("fw/app.bin", FW2)
    env.repo.publish()


def d_rollback_timestamp(env):
    env.server.misbehave("/metadata/timestamp.json", "replace", data=env.saved.pop("old_ts"))


def d_wrong_payload_type(env):
    env.repo.md["timestamp"].signed.version += 1
    env.server.misbehave(
        "/metadata/timestamp.json", "replace", data=env.repo.envelope_bytes("timestamp", payload_type="text/plain")
    )
    env.repo.md["timestamp"].signed.version -= 1


def d_bad_snapshot_signature(env):
    env.repo.md["snapshot"].signed.version += 1
    env.repo.write_metadata("snapshot", env.repo.sign_bytes("snapshot", [tuf_repo.new_signer()]), env.repo.md["snapshot"].signed.version)
    env.repo._update_timestamp_meta()
    env.repo.md["timestamp"].signed.version += 1
    env.repo.write_metadata("timestamp", env.repo.sign_bytes("timestamp"))


def d_fixed(env):
    env.repo.publish()


def d_metadata_timestamp(env):
    env.repo.md["timestamp"].signed.version += 1
    env.repo.write_metadata("timestamp", _traditional(env.repo, "timestamp"))


def d_root_rotation(env):
    env.repo.rotate("root", nkeys=2, threshold=2)
    env.repo.rotate("timestamp", key_type="ecdsa")
    env.repo.publish_root()
    env.repo.publish()


def d_expired_timestamp(env):
    env.repo.set_expiry("timestamp", dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=5))
    env.repo.publish()


def d_delegation(env):
    env.repo.set_expiry("timestamp", dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(days=1))
    env.repo.delegate("targets", "pump", paths=["pump/*"], terminating=True, key_type="rsa")
    env.repo.add_target("pump/fw.bin", FW, role="pump")
    env.repo.publish()
    env.names.append("pump/fw.bin")


def d_root_only_new_keys(env):
    env.repo.rotate("root")
    env.repo._prev_root_signers = []
    env.repo.publish_root()


DSTEPS = [
    ("initial", d_initial, True),
    ("new_release", d_new_release, True),
    ("rollback_timestamp", d_rollback_timestamp, False),
    ("wrong_payload_type", d_wrong_payload_type, False),
    ("bad_snapshot_signature", d_bad_snapshot_signature, False),
    ("fixed", d_fixed, True),
    ("metadata_timestamp", d_metadata_timestamp, False),
    ("root_rotation", d_root_rotation, True),
    ("expired_timestamp", d_expired_timestamp, False),
    ("delegation", d_delegation, True),
    ("root_only_new_keys", d_root_only_new_keys, False),
]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_same_decisions_as_ngclient_simple_envelope(tmp_path, runtime):
    cm, env = dsse_env(tmp_path, runtime, consistent_snapshot=True)
    try:
        ok(env.client.init(env.repo.root_path(1)))
        env.saved = {}
        env.names = ["fw/app.bin"]
        run_differential(env, tmp_path, DSTEPS, config=UpdaterConfig(envelope_type=EnvelopeType.SIMPLE))
    finally:
        cm.__exit__(None, None, None)


# ------------------------------------------------------------ envelope parser fuzz
# The device locates and decodes the DSSE payload in place (its own small
# JSON scanner, see updater/tuf/dsse.py); hypothesis checks on CPython
# that it takes exactly the envelopes python-tuf takes, with the same
# payload and signatures, under random edits of a real envelope.
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_EDIT_CHARS = list(b'"\\=A-_/+ {}[],:*\n0e') + [0xC3]


def _theirs(data: bytes):
    import json as _json

    from tuf.api.dsse import SimpleEnvelope

    try:
        env = SimpleEnvelope.from_bytes(data)
        if env.payload_type != SimpleEnvelope.DEFAULT_PAYLOAD_TYPE:
            return None
        if any(not isinstance(k, str) for k in env.signatures):
            return None  # ours requires string key ids (python-tuf's Metadata does too)
        signed = _json.loads(env.payload)
        if not isinstance(signed, dict):
            return None
        return env.payload, {k: s.signature for k, s in env.signatures.items()}
    except Exception:
        return None


def _ours(data: bytes):
    from updater.tuf import dsse
    from updater.tuf.errors import FormatError

    try:
        signed, part, sigs = dsse.open_envelope(data)
    except FormatError:
        return None
    if not isinstance(signed, dict):
        return None
    out = {}
    for s in sigs:
        if not isinstance(s["keyid"], str) or s["keyid"] in out:
            return None
        out[s["keyid"]] = s["sig"]
    return bytes(part.payload), out


_SAMPLE: list[bytes] = []


def _sample() -> bytes:
    if not _SAMPLE:
        from tuf.api.dsse import SimpleEnvelope
        from tuf.api.metadata import MetaFile, Timestamp

        ts = Timestamp(version=3, expires=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc), snapshot_meta=MetaFile(version=3))
        env = SimpleEnvelope.from_signed(ts)
        env.sign(tuf_repo.new_signer())
        env.sign(tuf_repo.new_signer())
        _SAMPLE.append(env.to_bytes())
    return _SAMPLE[0]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(_EDIT_CHARS), st.sampled_from(["set", "insert", "delete"])), min_size=1, max_size=3))
def test_envelope_parser_matches_python_tuf(edits):
    data = bytearray(_sample())
    for pos, ch, op in edits:
        i = pos % (len(data) + 1)
        if op == "insert":
            data[i:i] = bytes([ch])
        elif i < len(data):
            if op == "set":
                data[i] = ch
            else:
                del data[i]
    data = bytes(data)
    assert _ours(data) == _theirs(data), data
