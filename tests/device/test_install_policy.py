# One release policy (updater/install/policy.py): the update agent reads it
# from the TUF-signed custom fields, the installer from the verified manifest;
# the same release must get the same answer from both. And the installer's
# errors say whose fault a failure is: bad bytes on the way (TransferError,
# retried) or the release itself (refused).
import devtest
from install_helpers import package, index, mounts
from updater.install import policy
from updater.install.errors import PackageError, TransferError
from updater.install.installer import Installer
from updater.install.source import FileSource


def _manifest(version, counter=2, min_base="0.0.0", kind="full", base=None, models=("pump-v2",)):
    m = {"compatible_models": list(models), "model": models[0], "version": version, "security_counter": counter,
         "min_base_version": min_base, "kind": kind}
    if base is not None:
        m["base_version"] = base
    return m


def _custom(m):
    # What `release publish` signs into the TUF target for the same package.
    c = {"type": "package", "model": m["model"], "version": m["version"], "security_counter": m["security_counter"],
         "min_base_version": m["min_base_version"], "package_kind": m["kind"]}
    if "base_version" in m:
        c["base_version"] = m["base_version"]
    return c


# (manifest, running version, floor, expected refusal fragment or None)
CASES = [
    (_manifest("1.1.0"), "1.0.0", 0, None),
    (_manifest("1.1.0", counter=1), "1.0.0", 2, "below this device's floor 2"),
    (_manifest("1.2.0", min_base="1.1.0"), "1.0.0", 0, "needs at least version 1.1.0"),
    (_manifest("1.0.0"), "1.0.0", 0, "not newer"),
    (_manifest("0.9.0"), "1.0.0", 0, "not newer"),
    (_manifest("1.1.0", kind="patch", base="1.0.1"), "1.0.0", 0, "patch is against 1.0.1"),
    (_manifest("1.1.0", kind="patch", base="1.0.0"), "1.0.0", 0, None),
    (_manifest("1.1.0", models=("monitor-v1",)), "1.0.0", 0, "this device is pump-v2"),
]


def test_custom_fields_and_manifest_get_the_same_answer():
    for m, running, floor, want in CASES:
        a = policy.refusal(policy.from_manifest(m), "pump-v2", running, floor)
        b = policy.refusal(policy.from_custom(_custom(m)), "pump-v2", running, floor)
        assert a == b, (m, a, b)
        if want is None:
            assert a is None, (m, a)
        else:
            assert a is not None and want in a, (m, a)


def test_is_newer():
    assert policy.is_newer(policy.from_manifest(_manifest("1.0.10")), "1.0.9")
    assert not policy.is_newer(policy.from_manifest(_manifest("1.0.9")), "1.0.9")


def test_flipped_bytes_are_a_transfer_error_an_invalid_signed_manifest_is_not():
    m = mounts()
    ix = index()["pump-1.1.0-tampered"]
    e = devtest.raises(TransferError, Installer(m, "pump-v2").install, FileSource(package("pump-1.1.0-tampered")),
                       "t", ix["manifest_sha256"])
    assert "does not match" in str(e) or "corrupt" in str(e), str(e)
    # Not the signed manifest at all: bad bytes too (a broken mirror).
    devtest.raises(TransferError, Installer(m, "pump-v2").install, FileSource(package("pump-1.1.0")), "t", "0" * 64)
    # The signed manifest itself is invalid: the release's own fault.
    ix = index()["pump-1.1.0-slotjson"]
    e = devtest.raises(PackageError, Installer(m, "pump-v2").install, FileSource(package("pump-1.1.0-slotjson")),
                       "t", ix["manifest_sha256"])
    assert not isinstance(e, TransferError), repr(e)
