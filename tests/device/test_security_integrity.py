# agent/security/integrity.py: incremental scan of a slot + loader against
# the slot manifest; changed, added and removed files are all found.
import binascii
import hashlib
import json
import os

import devtest
from board.compat import ticks_ms, ticks_diff
from agent.security.posture import Scanner


def sha(b):
    return binascii.hexlify(hashlib.sha256(b).digest()).decode()


def make_slot(nfiles=6, size=3000):
    base = devtest.tmpdir()
    slot = base + "/slot_a"
    loader = base + "/loader"
    os.mkdir(slot)
    os.mkdir(slot + "/agent")
    os.mkdir(slot + "/updater")
    os.mkdir(loader)
    files = []
    for i in range(nfiles):
        # Written and hashed 1 KiB at a time: a 60 KB body in one piece does not
        # always find a free block on a fragmented 256 KiB heap.
        chunk = bytes([i]) * 1000
        h = hashlib.sha256()
        rel = "agent/m%d.mpy" % i
        with open(slot + "/" + rel, "wb") as f:
            for _ in range(size // 1000):
                f.write(chunk)
                h.update(chunk)
        digest = binascii.hexlify(h.digest()).decode()
        files.append({"path": rel, "sha256": digest, "size": size})
    for name in ("loader.mpy", "bootstate.mpy"):
        body = name.encode() * 50
        for p in (slot + "/updater/" + name, loader + "/" + name):
            with open(p, "wb") as f:
                f.write(body)
        files.append({"path": "updater/" + name, "sha256": sha(body), "size": len(body)})
    # Canonical JSON as the release tooling writes it (sorted keys, no spaces).
    ents = ['{"path":"%s","sha256":"%s","size":%d,"stored":true}' % (e["path"], e["sha256"], e["size"])
            for e in files]
    man = ('{"entry":"agent.main","files":[' + ",".join(ents) + '],"sbom":{"sha256":"%s","size":9}}'
           % ("0" * 64)).encode()
    with open(slot + "/manifest.json", "wb") as f:
        f.write(man)
    with open(slot + "/slot.json", "w") as f:
        f.write(json.dumps({"version": "1.0.0", "manifest_sha256": sha(man)}))
    return slot, loader


def full_scan(sc, budget=30):
    steps = 0
    while True:
        steps += 1
        if sc.step(budget):
            return steps


def test_clean_slot_verifies():
    slot, loader = make_slot()
    sc = Scanner(slot, loader)
    full_scan(sc)
    r = sc.result
    assert r["ok"] and r["bad"] == [] and r["files"] == 10, r


def test_changed_added_removed_and_loader_files_are_found():
    slot, loader = make_slot()
    with open(slot + "/agent/m2.mpy", "r+b") as f:
        f.seek(100)
        f.write(b"\xff")
    with open(slot + "/agent/evil.mpy", "wb") as f:
        f.write(b"x")
    os.remove(slot + "/agent/m4.mpy")
    with open(loader + "/loader.mpy", "ab") as f:
        f.write(b"!")
    sc = Scanner(slot, loader)
    full_scan(sc)
    bad = sc.result["bad"]
    assert not sc.result["ok"] and sc.result["nbad"] == 4, sc.result
    for want in ("~agent/m2.mpy", "+agent/evil.mpy", "-agent/m4.mpy", "~loader/loader.mpy"):
        assert want in bad, (want, bad)


def test_a_swapped_manifest_is_found():
    slot, loader = make_slot()
    with open(slot + "/manifest.json", "ab") as f:
        f.write(b" ")
    sc = Scanner(slot, loader)
    full_scan(sc)
    assert "~manifest.json" in sc.result["bad"]


def test_each_step_keeps_to_its_budget():
    slot, loader = make_slot(nfiles=16, size=60000)
    sc = Scanner(slot, loader)
    steps = full_scan(sc, budget=1)
    assert sc.result["ok"] and steps > 1
    # A 1 KiB read + hash past the budget is the most a step overshoots.
    assert sc.max_step_ms < 50, sc.max_step_ms


def test_next_scan_finds_a_change_made_after_a_clean_one():
    slot, loader = make_slot()
    sc = Scanner(slot, loader)
    full_scan(sc)
    assert sc.result["ok"]
    with open(slot + "/agent/m0.mpy", "wb") as f:
        f.write(b"patched")
    full_scan(sc)
    assert sc.result["bad"] == ["~agent/m0.mpy"] and sc.result["scans"] == 2
