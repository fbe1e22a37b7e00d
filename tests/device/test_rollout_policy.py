# Staged rollout membership (updater/install/policy.py): every device decides
# by itself from the signed custom field "rollout_percent" and its bucket,
# sha256(device_id + ":" + manifest_sha256) -> 0..99. The host tools import
# the same function (host_tools/release/rollout.py) to know who is in a stage,
# so the vectors below must hold on both runtimes.
import devtest
from updater.install import policy

A = "ab" * 32
B = "cd" * 32
# (device id, manifest sha256, bucket) - computed independently on the host:
# int.from_bytes(hashlib.sha256((d + ":" + m).encode()).digest()[:3], "big") % 100
VECTORS = [("pump-1", A, 97), ("pump-2", A, 84), ("monitor-7", "00" * 32, 14), ("pump-1", B, 45), ("", "", 55)]


def _custom(percent, sha=A):
    c = {"type": "package", "model": "pump-v2", "version": "1.1.0", "manifest_sha256": sha}
    if percent is not None:
        c["rollout_percent"] = percent
    return c


def test_bucket_vectors():
    for dev, sha, want in VECTORS:
        assert policy.rollout_bucket(dev, sha) == want, (dev, sha, policy.rollout_bucket(dev, sha))


def test_bucket_spreads_over_0_to_99():
    seen = [0] * 100
    for i in range(1000):
        seen[policy.rollout_bucket("dev-%d" % i, A)] += 1
    assert min(seen) >= 1 and max(seen) <= 30, (min(seen), max(seen))


def test_a_device_outside_the_stage_waits_inside_takes_it():
    # pump-1 has bucket 97 for release A, pump-2 84: a 90 % stage holds pump-2 only
    assert not policy.in_rollout(_custom(90), "pump-1")
    assert policy.in_rollout(_custom(90), "pump-2")
    assert policy.in_rollout(_custom(98), "pump-1")
    # the bucket depends on the release: pump-1 is at 45 for release B
    assert policy.in_rollout(_custom(50, B), "pump-1")
    # stage 0 (a halted rollout): nobody; 100 or no field (an ordinary release): everybody
    for dev in ("pump-1", "pump-2", "monitor-7"):
        assert not policy.in_rollout(_custom(0), dev)
        assert policy.in_rollout(_custom(100), dev)
        assert policy.in_rollout(_custom(None), dev)
    # a device without an id (never provisioned) waits for the full rollout
    assert not policy.in_rollout(_custom(99), None)
    assert policy.in_rollout(_custom(100), None)


def test_a_malformed_percentage_is_not_trusted():
    for bad in (-1, 101, "100", 50.0, True, None, [100]):
        c = _custom(50)
        c["rollout_percent"] = bad
        devtest.raises(TypeError, policy.in_rollout, c, "pump-2")
