# The installer on real packages built by the release tooling: full install,
# patch, unchanged-file reuse, trial, confirm, and every refusal.
import devtest
from install_helpers import package, index, mounts, read
from updater import bootstate, loader
from updater.install.installer import Installer
from updater.install.source import FileSource
from updater.install.errors import PackageError, PolicyError, SlotError
from updater.install import gate

NOW = 1790000000


def _install(m, name, model="pump-v2"):
    inst = Installer(m, model)
    src = FileSource(package(name))
    man = inst.install(src, "pump-v2/%s.mspk" % name, index()[name]["manifest_sha256"])
    return inst, src, man


def _install_and_confirm(m, name):
    inst, src, man = _install(m, name)
    inst.activate(NOW)
    st = bootstate.read_state(m["state"])
    slot, trial, changed = loader.decide(st, "soft", NOW + 1, m)
    assert trial and changed
    bootstate.write_state(m["state"], st)
    assert inst.confirm(NOW + 2) == man["version"]
    return slot


def test_full_install_goes_to_the_inactive_slot_and_verifies():
    m = mounts()
    inst, src, man = _install(m, "pump-1.0.0")
    assert man["version"] == "1.0.0"
    info = bootstate.slot_info(m["slot_b"])
    assert info["version"] == "1.0.0" and info["security_counter"] == 1
    assert read(m["slot_b"] + "/lib/const.txt") == b"unchanged\n" * 50
    assert loader.slot_has_app(m["slot_b"])
    assert inst.installed()["slot"] == "b"
    # Nothing touched the active slot or the boot state yet.
    assert bootstate.read_state(m["state"])["trial"] is None


def test_activate_trial_confirm_raises_the_floor():
    m = mounts()
    slot = _install_and_confirm(m, "pump-1.0.0")
    st = bootstate.read_state(m["state"])
    assert slot == "b" and st["active"] == "b" and st["floor"] == 1 and st["trial"] is None
    assert [e["type"] for e in st["events"]] == ["activated", "confirmed"]
    # Next boot is plain, from b.
    assert loader.decide(st, "soft", NOW + 10, m) == ("b", False, False)


def test_patch_copies_unchanged_files_and_downloads_only_the_change():
    m = mounts()
    _install_and_confirm(m, "pump-1.0.0")
    inst, src, man = _install(m, "pump-1.1.0-patch")
    assert man["kind"] == "patch"
    assert read(m["slot_a"] + "/agent/notes.txt") == b"version two notes, changed\n" * 100
    assert read(m["slot_a"] + "/lib/blob.bin") == read(m["slot_b"] + "/lib/blob.bin")
    # Reading the patch cost about as much as the patch file itself, far below
    # the full package (chunks of 1 KiB: the header may be read twice).
    assert src.downloaded <= index()["pump-1.1.0-patch"]["length"] + 1024
    assert src.downloaded < index()["pump-1.1.0"]["length"] // 2


def test_full_package_skips_downloading_unchanged_files():
    m = mounts()
    _install_and_confirm(m, "pump-1.0.0")
    inst, src, man = _install(m, "pump-1.1.0")
    full = index()["pump-1.1.0"]["length"]
    # Only the header, manifest and the one changed file were read.
    assert src.downloaded < full // 2, (src.downloaded, full)
    assert bootstate.slot_info(m["slot_a"])["version"] == "1.1.0"


def test_refuses_another_model():
    m = mounts()
    e = devtest.raises(PolicyError, _install, m, "monitor-1.1.0")
    assert "monitor-v1" in str(e)
    assert bootstate.slot_info(m["slot_b"]) is None


def test_refuses_below_the_security_counter_floor():
    m = mounts()
    _install_and_confirm(m, "pump-1.0.0")
    _install_and_confirm(m, "pump-1.1.0")
    st = bootstate.read_state(m["state"])
    assert st["floor"] == 2
    st["floor"] = 3  # as if a counter-3 release had been confirmed before
    bootstate.write_state(m["state"], st)
    inst = Installer(m, "pump-v2")
    # Pretend the running slot is older so only the counter can refuse.
    e = devtest.raises(PolicyError, inst.install, FileSource(package("pump-1.1.0")), "x",
                       index()["pump-1.1.0"]["manifest_sha256"])
    assert "floor" in str(e) or "not newer" in str(e)


def test_refuses_min_base_above_running():
    m = mounts()
    _install_and_confirm(m, "pump-1.0.0")
    e = devtest.raises(PolicyError, _install, m, "pump-2.0.0-needs-1.1")
    assert "at least version 1.1.0" in str(e)


def test_refuses_same_or_older_version():
    m = mounts()
    _install_and_confirm(m, "pump-1.1.0")
    e = devtest.raises(PolicyError, _install, m, "pump-1.0.0")
    assert "below this device's floor 2" in str(e)
    st = bootstate.read_state(m["state"])
    st["floor"] = 0  # even without the floor, an older version is refused
    bootstate.write_state(m["state"], st)
    e = devtest.raises(PolicyError, _install, m, "pump-1.0.0")
    assert "not newer" in str(e)


def test_refuses_patch_for_another_base():
    m = mounts()
    e = devtest.raises(PolicyError, _install, m, "pump-1.1.0-patch")
    assert "needs at least version 1.0.0" in str(e)


def test_manifest_not_matching_tuf_hash_is_rejected():
    m = mounts()
    inst = Installer(m, "pump-v2")
    e = devtest.raises(PackageError, inst.install, FileSource(package("pump-1.0.0")), "x", "0" * 64)
    assert "manifest_sha256 signed in TUF" in str(e)


def test_tampered_file_is_rejected_and_slot_stays_unbootable():
    m = mounts()
    inst = Installer(m, "pump-v2")
    devtest.raises(PackageError, inst.install, FileSource(package("pump-1.1.0-tampered")), "t",
                   index()["pump-1.1.0-tampered"]["manifest_sha256"])
    assert bootstate.slot_info(m["slot_b"]) is None
    assert not loader.slot_bootable(m["slot_b"], 0)
    devtest.raises(SlotError, inst.activate, NOW)


def test_truncated_transfer_resumes_where_it_stopped():
    m = mounts()
    inst = Installer(m, "pump-v2")
    digest = index()["pump-1.1.0"]["manifest_sha256"]
    first = FileSource(package("pump-1.1.0-truncated"))
    devtest.raises(PackageError, inst.install, first, "pump-v2/pump-1.1.0.mspk", digest)
    j = inst.read_journal()
    assert j["phase"] == "installing"
    starts = []

    class Again(FileSource):
        def stream(self, offset, sink):
            starts.append(offset)
            return FileSource.stream(self, offset, sink)

    again = Again(package("pump-1.1.0"))
    man = Installer(m, "pump-v2").install(again, "pump-v2/pump-1.1.0.mspk", digest)
    assert man["version"] == "1.1.0"
    ix = index()["pump-1.1.0"]
    # The second transfer re-read only the header and manifest (in 1 KiB
    # chunks), then went on at the byte where the first one stopped and read
    # no more than the rest of the file (it stops before the SBOM).
    assert starts == [0, ix["data_offset"] + 900], starts
    header_read = (ix["data_offset"] + 1023) // 1024 * 1024
    assert again.downloaded - header_read <= ix["length"] - (ix["data_offset"] + 900)


def test_no_install_while_a_trial_is_pending():
    m = mounts()
    inst, src, man = _install(m, "pump-1.0.0")
    inst.activate(NOW)
    e = devtest.raises(PolicyError, _install, m, "pump-1.1.0")
    assert "trial" in str(e)


def test_gate_rules():
    idle = {"state": "idle", "alarms": []}
    infusing = {"state": "infusing", "alarms": []}
    alarm = {"state": "alarm", "alarms": ["OCCLUSION"]}
    w = gate.parse_window("02:00-04:00")
    at_3am = 1790000000 - (1790000000 % 86400) + 3 * 3600
    at_noon = at_3am + 9 * 3600
    assert gate.check(idle, at_3am, w) is None
    assert gate.check(idle, at_noon, w) == "outside the maintenance window"
    assert gate.check(idle, at_noon, w, urgent=True) is None
    assert gate.check(infusing, at_3am, w, urgent=True) == "infusion in progress"
    assert "alarm active" in gate.check(alarm, at_3am, None, urgent=True)
    assert gate.check(None, at_3am) == "pump state unknown"
    wrap = gate.parse_window("23:00-01:00")
    assert gate.in_window(wrap, at_3am - 3 * 3600 + 1800)
    devtest.raises(ValueError, gate.parse_window, "25:00-01:00")
    devtest.raises(ValueError, gate.parse_window, "nonsense")
