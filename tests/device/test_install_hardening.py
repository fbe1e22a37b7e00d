# Adversarial cases of the installer: refusals that must not destroy
# anything, corrupt transfers that must not poison the resume state, packages
# whose manifest names clash with the installer's own files or with each
# other, a slot too small for the package, resume inside the first file.
import os
import devtest
from install_helpers import package, index, mounts, read
from updater import bootstate, loader
from updater.install.installer import Installer
from updater.install.source import FileSource
from updater.install.errors import PackageError, PolicyError, SlotError, TransferError

NOW = 1790000000


class RecordingSource(FileSource):
    # A FileSource that remembers where each stream started.
    def __init__(self, path):
        FileSource.__init__(self, path)
        self.starts = []

    def stream(self, offset, sink):
        self.starts.append(offset)
        return FileSource.stream(self, offset, sink)


def _install(m, name, target=None, digest_of=None):
    inst = Installer(m, "pump-v2")
    digest = index()[digest_of or name]["manifest_sha256"]
    return inst.install(FileSource(package(name)), target or "pump-v2/%s.mspk" % name, digest)


def test_refused_package_leaves_a_waiting_install_alone():
    # 1.0.0 installed into slot b, waiting for the clinical gate to allow
    # activation. A refused package (another model; a manifest not matching
    # TUF) must neither wipe slot b nor replace its journal.
    m = mounts()
    _install(m, "pump-1.0.0")
    before = read(m["slot_b"] + "/lib/blob.bin")
    devtest.raises(PolicyError, _install, m, "monitor-1.1.0")
    inst = Installer(m, "pump-v2")
    devtest.raises(PackageError, inst.install, FileSource(package("pump-1.1.0")), "x", "0" * 64)
    assert bootstate.slot_info(m["slot_b"])["version"] == "1.0.0"
    assert read(m["slot_b"] + "/lib/blob.bin") == before
    j = Installer(m, "pump-v2").installed()
    assert j is not None and j["manifest_sha256"] == index()["pump-1.0.0"]["manifest_sha256"]
    Installer(m, "pump-v2").activate(NOW)
    assert bootstate.read_state(m["state"])["trial"]["version"] == "1.0.0"


def _manifest_of(name):
    import json
    from updater.install import manifest as pkgman

    data = read(package(name))
    mlen, _ = pkgman.parse_header(data[:pkgman.HEADER_SIZE])
    return json.loads(data[pkgman.HEADER_SIZE:pkgman.HEADER_SIZE + mlen])


def test_corrupt_transfer_does_not_poison_the_retry():
    # A transfer that delivered wrong bytes inside one blob (a broken
    # mirror, a server answering a Range request from the wrong offset) is
    # rejected; the retry from a good server must not re-inflate the same bad
    # blob kept on flash for resuming.
    m = mounts()
    ix = index()["pump-1.1.0"]
    entry = [e for e in _manifest_of("pump-1.1.0")["files"] if e["path"] == "lib/blob.bin"][0]
    data = bytearray(read(package("pump-1.1.0")))
    data[ix["data_offset"] + entry["offset"] + 100] ^= 0x40
    bad = devtest.tmpdir() + "/bad.mspk"
    with open(bad, "wb") as f:
        f.write(data)
    target = "pump-v2/pump-1.1.0.mspk"
    inst = Installer(m, "pump-v2")
    devtest.raises(PackageError, inst.install, FileSource(bad), target, ix["manifest_sha256"])
    assert inst.read_journal()["done"] == 2  # two files in, lib/blob.bin failed
    man = Installer(m, "pump-v2").install(FileSource(package("pump-1.1.0")), target, ix["manifest_sha256"])
    assert man["version"] == "1.1.0"
    assert bootstate.slot_info(m["slot_b"])["version"] == "1.1.0"


def test_package_that_rolled_back_here_is_refused():
    m = mounts()
    inst = Installer(m, "pump-v2")
    inst.install(FileSource(package("pump-1.0.0")), "t", index()["pump-1.0.0"]["manifest_sha256"])
    inst.activate(NOW)
    st = bootstate.read_state(m["state"])
    st["trial"]["health"] = "self-test failed"
    slot, trial, _ = loader.decide(st, "soft", NOW + 1, m)
    bootstate.write_state(m["state"], st)
    assert not trial and "rolled_back" in [e["type"] for e in st["events"]]
    e = devtest.raises(PolicyError, _install, m, "pump-1.0.0")
    assert "rolled back" in str(e)


def test_file_named_like_the_slot_record_is_refused():
    # slot.json is what makes a slot bootable and is written last: a package
    # file of that name would make a half-installed slot look complete.
    m = mounts()
    e = devtest.raises(PackageError, _install, m, "pump-1.1.0-slotjson")
    assert "slot.json" in str(e)
    assert bootstate.slot_info(m["slot_b"]) is None


def test_path_that_is_both_file_and_directory_is_bad_data():
    # Not an OSError (which the agent treats as a transport failure and
    # retries for ever): the manifest is refused before anything is written.
    m = mounts()
    e = devtest.raises(PackageError, _install, m, "pump-1.1.0-filedir")
    assert "lib" in str(e)
    assert os.listdir(m["slot_b"]) == []


def test_resume_inside_the_first_file_continues_at_the_byte():
    m = mounts()
    ix = index()["pump-1.0.0"]
    cut = ix["data_offset"] + 40  # inside the first blob
    part = devtest.tmpdir() + "/part.mspk"
    with open(part, "wb") as f:
        f.write(read(package("pump-1.0.0"))[:cut])
    inst = Installer(m, "pump-v2")
    devtest.raises(PackageError, inst.install, FileSource(part), "t", ix["manifest_sha256"])
    src = RecordingSource(package("pump-1.0.0"))
    Installer(m, "pump-v2").install(src, "t", ix["manifest_sha256"])
    assert src.starts == [0, cut], src.starts
    assert bootstate.slot_info(m["slot_b"])["version"] == "1.0.0"


class _RamBlocks:
    # A RAM block device for littlefs: a slot partition of a few KiB.
    def __init__(self, blocks, bs=512):
        self.bs = bs
        self.n = blocks
        self.data = bytearray(blocks * bs)

    def readblocks(self, b, buf, off=0):
        a = b * self.bs + off
        buf[:] = self.data[a:a + len(buf)]

    def writeblocks(self, b, buf, off=None):
        a = b * self.bs + (off or 0)
        self.data[a:a + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:
            return self.n
        if op == 5:
            return self.bs
        return 0


def test_package_larger_than_the_slot_is_refused_not_retried():
    # A slot too small for the package: SlotError (a refusal), never an
    # OSError(ENOSPC) that the agent would take for a broken link.
    if devtest.RUNTIME != "micropython":
        devtest.skip("needs littlefs (vfs.VfsLfs2) for a small slot")
    import vfs

    m = mounts()
    mnts = ((14, "/tslot_small"), (18, "/tslot_tight"), (64, "/tslot_fits"))
    for blocks, mnt in mnts:
        dev = _RamBlocks(blocks)
        vfs.VfsLfs2.mkfs(dev)
        vfs.mount(vfs.VfsLfs2(dev), mnt)
    try:
        m["slot_b"] = "/tslot_small"
        e = devtest.raises(SlotError, _install, m, "pump-1.0.0")
        assert "the slot holds" in str(e)
        # Large enough on paper, not with littlefs' own blocks: the slot
        # fills up while writing.
        m["slot_b"] = "/tslot_tight"
        e = devtest.raises(SlotError, _install, m, "pump-1.0.0")
        assert "the slot is full" in str(e) or "slot full" in str(e), str(e)
        # A device with a slot that can hold it installs fine.
        m = mounts()
        m["slot_b"] = "/tslot_fits"
        assert _install(m, "pump-1.0.0")["version"] == "1.0.0"
    finally:
        for blocks, mnt in mnts:
            vfs.umount(mnt)


def test_slot_that_fails_the_last_check_is_redone_on_retry():
    # A file already written and checked goes bad on flash before the final
    # pass: that attempt fails (TransferError: retried, the release is not at
    # fault), the next one starts the slot over instead of failing at the
    # same point for ever.
    m = mounts()
    ix = index()["pump-1.1.0"]
    target = "pump-v2/pump-1.1.0.mspk"
    inst = Installer(m, "pump-v2")
    devtest.raises(PackageError, inst.install, FileSource(package("pump-1.1.0-truncated")), target,
                   ix["manifest_sha256"])
    assert inst.read_journal()["done"] == 2
    with open(m["slot_b"] + "/agent/notes.txt", "wb") as f:
        f.write(b"bit rot")
    inst = Installer(m, "pump-v2")
    devtest.raises(TransferError, inst.install, FileSource(package("pump-1.1.0")), target, ix["manifest_sha256"])
    assert bootstate.slot_info(m["slot_b"]) is None
    man = Installer(m, "pump-v2").install(FileSource(package("pump-1.1.0")), target, ix["manifest_sha256"])
    assert man["version"] == "1.1.0"
    assert read(m["slot_b"] + "/agent/notes.txt") == b"version two notes, changed\n" * 100


def test_update_over_an_installed_slot_holds_one_manifest_while_streaming():
    # 64 files (the cap): the heap an update holds grows with the
    # number of files (the parsed manifest); it must not also hold the raw
    # manifest bytes and an index parsed from the running slot's manifest.
    # Sampled at every progress call (the live heap while files stream);
    # the transient peak of parsing the manifest is not what this measures.
    import gc

    m = mounts()
    inst = Installer(m, "pump-v2")
    inst.install(FileSource(package("pump-many-1.0.0")), "t", index()["pump-many-1.0.0"]["manifest_sha256"])
    inst.activate(NOW)
    st = bootstate.read_state(m["state"])
    loader.decide(st, "soft", NOW + 1, m)
    bootstate.write_state(m["state"], st)
    inst.confirm(NOW + 2)
    inst = None
    gc.collect()
    idle = _mem_free()
    low = [idle]

    def progress(ev):
        gc.collect()
        f = _mem_free()
        if f < low[0]:
            low[0] = f

    src = FileSource(package("pump-many-1.1.0"))
    man = Installer(m, "pump-v2", progress=progress).install(src, "t2", index()["pump-many-1.1.0"]["manifest_sha256"])
    assert man["version"] == "1.1.0" and bootstate.slot_info(m["slot_a"])["version"] == "1.1.0"
    assert read(m["slot_a"] + "/lib/m001.txt") == read(m["slot_b"] + "/lib/m001.txt")
    if devtest.RUNTIME == "micropython":
        used = idle - low[0]
        assert used < 64 * 1024, used


def _mem_free():
    import gc

    return gc.mem_free() if hasattr(gc, "mem_free") else 0


def test_tampered_slot_record_cannot_raise_the_floor():
    # slot.json of the inactive slot edited between install and activation
    # (claims counter 99): activation must not believe it, or confirming the
    # trial would lift the floor to 99 and refuse every genuine release.
    import json

    m = mounts()
    _install(m, "pump-1.0.0")
    info = bootstate.slot_info(m["slot_b"])
    info["security_counter"] = 99
    with open(m["slot_b"] + "/slot.json", "w") as f:
        f.write(json.dumps(info))
    inst = Installer(m, "pump-v2")
    # Not offered for activation (the agent asks installed() every tick and
    # must not trip over it for ever), and activate() refuses it.
    assert inst.installed() is None
    devtest.raises(SlotError, inst.activate, NOW)
    st = bootstate.read_state(m["state"])
    assert st["trial"] is None and st["floor"] == 0
    assert not loader.slot_bootable(m["slot_b"], 0)
    # The next check installs it again, cleanly.
    _install(m, "pump-1.0.0")
    assert Installer(m, "pump-v2").activate(NOW)["counter"] == 1


def test_changed_manifest_in_the_installed_slot_is_not_activated():
    m = mounts()
    _install(m, "pump-1.0.0")
    with open(m["slot_b"] + "/manifest.json", "ab") as f:
        f.write(b" ")
    inst = Installer(m, "pump-v2")
    devtest.raises(SlotError, inst.activate, NOW)
    # Refused once, then forgotten: no activation loop, slot not bootable.
    assert inst.installed() is None and inst.read_journal() is None
    assert not loader.slot_bootable(m["slot_b"], 0)
    assert bootstate.read_state(m["state"])["trial"] is None


def test_non_ascii_path_is_refused_on_both_runtimes():
    from updater.install import manifest as pkgman

    m = _manifest_of("pump-1.0.0")
    m["files"][0]["path"] = "agent/caf\u00e9.mpy"
    devtest.raises(PackageError, pkgman.validate, m)
    m["files"][0]["path"] = "agent/main.mpy"
    pkgman.validate(m)


def test_gate_fails_closed_on_a_pump_reading_it_cannot_read():
    from updater.install import gate

    at = 1790000000
    assert gate.check({"state": "idle", "alarms": []}, at) is None
    # A reading without a state (a glitch, a half-parsed frame) is not idle.
    for reading in ({}, {"alarms": []}, {"state": None}, {"state": "idle", "alarms": None, "x": 1},
                    "idle", ["idle"]):
        why = gate.check(reading, at, urgent=True)
        if reading == {"state": "idle", "alarms": None, "x": 1}:
            assert why is None  # no alarms reported as null is still no alarm
        else:
            assert why is not None, reading


def test_manifest_entry_must_be_a_module_name():
    # The entry goes into slot.json and from there to the loader's __import__.
    from updater.install import manifest as pkgman

    m = _manifest_of("pump-1.0.0")
    for bad in ("../../state/x", "os;x", "", 5, "agent..main", "a" * 65):
        m["entry"] = bad
        devtest.raises(PackageError, pkgman.validate, m)
    m["entry"] = "agent.main"
    pkgman.validate(m)
