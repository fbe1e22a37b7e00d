"""Generate the golden DSSE fixtures for tests/device/test_tuf_dsse.py (host script).

Run from the repository root:
    .venv/bin/python tests/device/data/tuf/dsse/make_dsse_fixtures.py

Everything here is produced by python-tuf (tuf.api.dsse.SimpleEnvelope) and
securesystemslib (Envelope.pae, the b64dec that python-tuf decodes DSSE
base64 with); the output is committed. Keys are fresh on each run. Valid
metadata expires 2030-01-01; the device tests use REF_TIME 2026-01-01.

Files:
- vectors.json: "pae" (payload type, base64 payload, PAE hex by
  securesystemslib), "b64" (strings and what securesystemslib's b64dec
  makes of them: hex, or null when it raises), "ref_time", "negative"
  (file, role, exception name).
- root1.json, timestamp2.json, snapshot2.json, targets2.json: a DSSE chain
  (ed25519 root/timestamp, ecdsa snapshot, rsa targets); root2.json: root v2
  signed by the v1 and the new root key.
- root1_metadata.json: the same root in the traditional envelope.
- negative files listed in vectors.json.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

from securesystemslib._internal.utils import b64dec
from securesystemslib.signer import CryptoSigner
from tuf.api.dsse import SimpleEnvelope
from tuf.api.metadata import MetaFile, Metadata, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

OUT = Path(__file__).resolve().parent
VALID = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
REF_TIME = int(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp())


def env(signed, *signers, payload_type: str | None = None) -> bytes:
    e = SimpleEnvelope.from_signed(signed)
    if payload_type is not None:
        e.payload_type = payload_type
    for s in signers:
        e.sign(s)
    return e.to_bytes()


def write(name: str, data: bytes) -> None:
    (OUT / name).write_bytes(data)


def b64_case(s: str) -> dict:
    try:
        return {"s": s, "hex": b64dec(s).hex()}
    except Exception:
        return {"s": s, "hex": None}


def main() -> None:
    for f in OUT.glob("*.json"):
        f.unlink()
    k_root = CryptoSigner.generate_ed25519()
    k_root2 = CryptoSigner.generate_ed25519()
    k_ts = CryptoSigner.generate_ed25519()
    k_snap = CryptoSigner.generate_ecdsa()
    k_tg = CryptoSigner.generate_rsa(scheme="rsassa-pss-sha256", size=2048)
    other = CryptoSigner.generate_ed25519()

    root = Root(expires=VALID, consistent_snapshot=False)
    for role, k in (("root", k_root), ("timestamp", k_ts), ("snapshot", k_snap), ("targets", k_tg)):
        root.add_key(k.public_key, role)
    write("root1.json", env(root, k_root))
    md = Metadata(root)
    md.sign(k_root)
    write("root1_metadata.json", md.to_bytes(JSONSerializer(compact=True)))
    write("root1_unsigned.json", env(root))
    write("root1_wrong_key.json", env(root, other))

    targets = Targets(version=2, expires=VALID)
    targets.targets["fw/app.bin"] = TargetFile.from_data("fw/app.bin", b"firmware\n" * 10, ["sha256"])
    tg = env(targets, k_tg)
    write("targets2.json", tg)
    snap = Snapshot(version=2, expires=VALID)
    snap.meta["targets.json"] = MetaFile(version=2, length=len(tg))
    sn = env(snap, k_snap)
    write("snapshot2.json", sn)
    ts = Timestamp(version=2, expires=VALID, snapshot_meta=MetaFile(version=2, length=len(sn)))
    write("timestamp2.json", env(ts, k_ts))

    # negatives
    write("timestamp2_bad_sig.json", env(ts, other))
    write("timestamp2_wrong_type.json", env(ts, k_ts, payload_type="application/json"))
    d = json.loads(env(ts, k_ts))
    pl = json.loads(base64.b64decode(d["payload"]))
    pl["version"] = 3  # payload changed after signing
    d["payload"] = base64.b64encode(json.dumps(pl).encode()).decode()
    write("timestamp2_tampered.json", json.dumps(d).encode())
    d = json.loads(env(ts, k_ts))
    d["payload"] = d["payload"][:-4] + "*" + d["payload"][-3:]
    write("timestamp2_bad_b64.json", json.dumps(d).encode())
    mdts = Metadata(ts)
    mdts.sign(k_ts)
    write("timestamp2_metadata.json", mdts.to_bytes(JSONSerializer(compact=True)))
    write("snapshot2_as_timestamp.json", env(snap, k_ts))

    root.version = 2
    root.revoke_key(k_root.public_key.keyid, "root")
    root.add_key(k_root2.public_key, "root")
    write("root2.json", env(root, k_root, k_root2))
    write("root2_only_new.json", env(root, k_root2))

    pae = []
    for ptype, payload in (
        (SimpleEnvelope.DEFAULT_PAYLOAD_TYPE, b'{"_type":"timestamp"}'),
        ("", b""),
        ("application/vnd.tuf+json", bytes(range(256))),
        ("t\u00e9st", "h\u00e9llo \U0001F600".encode()),
    ):
        e = SimpleEnvelope(payload, ptype, {})
        pae.append({"type": ptype, "payload": base64.b64encode(payload).decode(), "pae": e.pae().hex()})
    raw = bytes(range(40))
    std = base64.b64encode(raw).decode()
    url = base64.urlsafe_b64encode(raw).decode()
    b64 = [
        b64_case(s)
        for s in (
            "", std, url, std.rstrip("="), "aGVsbG8=", "aGVsbA==", "aGVsbG8", "aGVs bG8=", "aGVs\nbG8=",
            "aGVsbG8==", "aGVsbA===", "aGV*bG8=", "=aGVsbG8", "aG=sbG8=", "aGVsbG8=aGVs", "ab+/", "ab-_", "ab+_",
            "====", "==", "=", "ab==", "abc=", "abd=", "abcd==", "abcd=", "abc==", "abcde==", "ab=", "abcdef=",
            "abcdefg==", "-_-_", "ab-=", "a\u00e9bc", "\u00e9", std + "==", url.replace("A", "_"),
        )
    ]
    negative = [
        ["root1_unsigned.json", "root", "UnsignedMetadataError"],
        ["root1_wrong_key.json", "root", "UnsignedMetadataError"],
        ["root1_metadata.json", "root", "FormatError"],
        ["timestamp2_bad_sig.json", "timestamp", "UnsignedMetadataError"],
        ["timestamp2_wrong_type.json", "timestamp", "FormatError"],
        ["timestamp2_tampered.json", "timestamp", "UnsignedMetadataError"],
        ["timestamp2_bad_b64.json", "timestamp", "FormatError"],
        ["timestamp2_metadata.json", "timestamp", "FormatError"],
        ["snapshot2_as_timestamp.json", "timestamp", "FormatError"],
        ["root2_only_new.json", "root", "UnsignedMetadataError"],
    ]
    vec = {"ref_time": REF_TIME, "pae": pae, "b64": b64, "negative": negative}
    write("vectors.json", json.dumps(vec, indent=1).encode())


if __name__ == "__main__":
    main()
