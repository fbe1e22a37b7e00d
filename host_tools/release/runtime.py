"""The runtime a package targets, as SBOM components (one declared source).

``runtime.json`` beside this file names the MicroPython VM the boards run (its
version, git build, mpy ABI), the mbedTLS built into it and the micropython-lib
modules frozen into it; tests/host/test_runtime_manifest.py checks every value
against the VM itself. Nothing else types these versions: the SBOM's
components and identifiers are derived here.

Identifiers (purl spec, https://github.com/package-url/purl-spec):

* MicroPython: ``pkg:github/micropython/micropython@<git commit>`` (the ``github``
  type, whose version is a commit or tag; the VM reports a commit, not a tag)
  and CPE 2.3 ``cpe:2.3:a:micropython:micropython:<x.y.z>:<pre-release>:...``.
* mbedTLS: ``pkg:github/Mbed-TLS/mbedtls@mbedtls-<version>`` (the project's
  release tag) and CPE ``cpe:2.3:a:arm:mbed_tls:<version>:...``.
* micropython-lib modules: ``pkg:generic/micropython-lib/<name>@<version>?vcs_url=
  git+https://github.com/micropython/micropython-lib#<path>`` (the ``generic``
  type: micropython-lib versions each package in its manifest but tags no
  release, so a ``github`` purl could name no version; the namespace keeps two
  modules apart, the subpath says where the module lives in the repository).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources

from packageurl import PackageURL

MICROPYTHON_LIB_VCS = "git+https://github.com/micropython/micropython-lib"


@dataclass(frozen=True)
class RuntimeComponent:
    key: str  # bom-ref
    name: str
    version: str
    purl: str
    cpe: str | None
    kind: str  # "platform" | "library"
    description: str


def manifest() -> dict:
    """runtime.json, parsed."""
    return json.loads(resources.files(__package__).joinpath("runtime.json").read_text())


def _cpe(vendor: str, product: str, version: str) -> str:
    core, _, pre = version.partition("-")
    return f"cpe:2.3:a:{vendor}:{product}:{core}:{pre or '*'}:*:*:*:*:*:*"


def components(m: dict | None = None) -> dict[str, RuntimeComponent]:
    """Every runtime component of the VM, by bom-ref."""
    m = manifest() if m is None else m
    mp, tls = m["micropython"], m["mbedtls"]
    out = {
        "runtime:micropython": RuntimeComponent(
            "runtime:micropython", "micropython", mp["version"],
            PackageURL("github", "micropython", "micropython", mp["git"]).to_string(),
            _cpe("micropython", "micropython", mp["version"]), "platform",
            f"MicroPython VM ({mp['variant']} build {mp['git']} of {mp['build_date']}, .mpy v{mp['mpy']})"),
        "runtime:mbedtls": RuntimeComponent(
            "runtime:mbedtls", "mbedtls", tls["version"],
            PackageURL("github", "Mbed-TLS", "mbedtls", "mbedtls-" + tls["version"]).to_string(),
            _cpe("arm", "mbed_tls", tls["version"]), "library",
            "Mbed TLS built into the MicroPython VM (tls/ssl modules)"),
    }
    for lib in m["micropython_lib"]:
        ref = "micropython-lib:" + lib["name"]
        out[ref] = RuntimeComponent(
            ref, lib["name"], lib["version"],
            PackageURL("generic", "micropython-lib", lib["name"], lib["version"],
                       {"vcs_url": MICROPYTHON_LIB_VCS}, lib["path"]).to_string(),
            None, "library", f"micropython-lib {lib['path']} (frozen into the VM)")
    return out


_IMPORT = re.compile(rb"^\s*(?:import|from)\s+([A-Za-z_][A-Za-z0-9_]*)", re.M)


def used_lib_modules(sources: dict[str, bytes], m: dict | None = None) -> list[str]:
    """Names of the VM's micropython-lib modules that the package's Python
    sources import (``import ssl`` / ``from ssl import ...``, at any depth)."""
    m = manifest() if m is None else m
    names = {lib["name"] for lib in m["micropython_lib"]}
    found: set[str] = set()
    for path, text in sources.items():
        if path.endswith(".py"):
            found.update(n.decode() for n in _IMPORT.findall(text))
    return sorted(names & found)
