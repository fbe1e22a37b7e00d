# The release policy: may this device take this release? One rule set, used
# twice: by the update agent on the TUF-signed custom fields of a target
# (to pick the newest release it can take, before downloading anything) and
# by the installer on the verified package manifest (the last word). Both
# describe the same release, so both must give the same answer.
#
# release(): the fields the rules read, from either source:
#   models       compatible models (manifest "compatible_models"; the
#                target's custom "model")
#   version      "X.Y.Z"
#   counter      security counter (anti-rollback)
#   min_base     lowest running version the package may be installed over
#   kind         "full" or "patch"
#   base         the version a patch is made against
#
# Staged rollout (`medsentry release rollout`): the target's signed custom
# field "rollout_percent" (0..100, absent: 100) is the share of the fleet the
# release is offered to. Each device decides by itself: its bucket, a number
# 0..99 from sha256(device_id + ":" + manifest_sha256), must be below the
# percentage. The host tools use this same function to know who is in a stage.
import hashlib

from updater.install.manifest import parse_version


def from_manifest(m):
    return release(m["compatible_models"], m["version"], m["security_counter"], m["min_base_version"],
                   m["kind"], m.get("base_version"))


def from_custom(c):
    # TypeError / PackageError when a signed field is malformed.
    return release([c.get("model")], c.get("version"), c.get("security_counter", 0),
                   c.get("min_base_version", "0.0.0"), c.get("package_kind", "full"), c.get("base_version"))


def release(models, version, counter, min_base, kind, base):
    return {"models": models, "version": version, "counter": counter, "min_base": min_base,
            "kind": kind, "base": base}


def is_newer(rel, running_version):
    return parse_version(rel["version"]) > parse_version(running_version)


def refusal(rel, model, running_version, floor):
    # None when the device may take the release, else why not (one line).
    # "Not newer" is a refusal too: callers that list candidates check
    # is_newer() first and skip older releases silently.
    if model not in rel["models"]:
        return "package is for %s, this device is %s" % (", ".join(rel["models"]), model)
    if rel["counter"] < floor:
        return "security counter %d is below this device's floor %d" % (rel["counter"], floor)
    running = parse_version(running_version)
    if parse_version(rel["min_base"]) > running:
        return "package needs at least version %s, this device runs %s" % (rel["min_base"], running_version)
    if parse_version(rel["version"]) <= running:
        return "package version %s is not newer than the running %s" % (rel["version"], running_version)
    if rel["kind"] == "patch" and rel["base"] != running_version:
        return "patch is against %s, this device runs %s" % (rel["base"], running_version)
    return None


def rollout_bucket(device_id, manifest_sha256):
    # 0..99, the same on every runtime: the first 3 bytes of the digest
    # (a small int on any MicroPython port), modulo 100.
    h = hashlib.sha256((device_id + ":" + manifest_sha256).encode()).digest()
    return ((h[0] << 16) | (h[1] << 8) | h[2]) % 100


def in_rollout(c, device_id):
    # True when the signed custom fields `c` offer the release to this
    # device. TypeError when the percentage is malformed (the caller then
    # skips the release). A device without an id waits for 100 %.
    p = c.get("rollout_percent", 100)
    if type(p) is not int or p < 0 or p > 100:
        raise TypeError("rollout_percent")
    if p >= 100:
        return True
    if not device_id:
        return False
    return rollout_bucket(device_id, c.get("manifest_sha256") or "") < p
