"""Issue 14 item 2: the SBOM's runtime components come from one declared source
(host_tools/release/runtime.json), checked here against the real VM, and every
package SBOM names them with versions, purls and CPEs."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from host_tools import mpvm
from host_tools.release.build import build_package
from host_tools.release.runtime import components, manifest

PROBE = """
import sys, tls
print(repr((sys.implementation.version, sys.version, sys.implementation._mpy, sys.implementation._build)))
print(tls.MBEDTLS_VERSION)
for n in %r:
    m = __import__(n)
    print(n, m.__version__)
"""


def test_runtime_manifest_matches_the_vm():
    m = manifest()
    libs = [lib["name"] for lib in m["micropython_lib"]]
    out = subprocess.run([mpvm.micropython_path(), "-c", PROBE % (libs,)], capture_output=True, text=True,
                         timeout=30, check=True).stdout.splitlines()
    (major, minor, micro, pre), version, mpy, build = eval(out[0])  # a tuple literal printed by the VM
    mp = m["micropython"]
    assert mp["version"] == f"{major}.{minor}.{micro}" + (f"-{pre}" if pre else "")
    assert f"MicroPython {mp['git']} on {mp['build_date']}" in version and build == mp["variant"]
    assert mp["mpy"] == f"{mpy & 0xff}.{(mpy >> 8) & 3}"  # mpy version and sub-version (py/persistentcode.h)
    assert out[1] == "Mbed TLS " + m["mbedtls"]["version"]
    assert dict(line.split() for line in out[2:]) == {lib["name"]: lib["version"] for lib in m["micropython_lib"]}


def _sbom(tmp: Path, uses_ssl: bool) -> dict:
    src = tmp / "src"
    (src / "app").mkdir(parents=True)
    (src / "app" / "net.py").write_text("def connect(s):\n    import ssl\n    return ssl\n" if uses_ssl else "X = 1\n")
    (src / "app" / "main.py").write_text("import json\nfrom app import net\n")
    r = build_package(model="pump-v2", version="1.0.0", sources=[src / "app"], base_dir=src,
                      security_counter=1, out_dir=tmp)
    text = r.sbom_path.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None  # CycloneDX 1.6 schema
    return json.loads(text)


def test_package_sbom_names_the_runtime(tmp_path):
    rt = components()
    doc = _sbom(tmp_path / "a", uses_ssl=True)
    comps = {c["bom-ref"]: c for c in doc["components"] if c["type"] != "file"}
    assert set(comps) == {"runtime:micropython", "runtime:mbedtls", "micropython-lib:ssl"}
    for ref, c in comps.items():
        assert (c["name"], c["version"], c["purl"]) == (rt[ref].name, rt[ref].version, rt[ref].purl)
    m = manifest()
    assert comps["runtime:micropython"]["version"] == m["micropython"]["version"]
    assert comps["runtime:micropython"]["purl"] == f"pkg:github/micropython/micropython@{m['micropython']['git']}"
    assert comps["runtime:micropython"]["cpe"].startswith("cpe:2.3:a:micropython:micropython:")
    assert comps["runtime:mbedtls"]["purl"] == f"pkg:github/mbed-tls/mbedtls@mbedtls-{m['mbedtls']['version']}"
    assert comps["runtime:mbedtls"]["cpe"] == f"cpe:2.3:a:arm:mbed_tls:{m['mbedtls']['version']}:*:*:*:*:*:*:*"
    assert comps["micropython-lib:ssl"]["purl"].startswith("pkg:generic/micropython-lib/ssl@0.2.1?")
    deps = {d["ref"]: set(d.get("dependsOn", [])) for d in doc["dependencies"]}
    assert set(comps) <= deps[doc["metadata"]["component"]["bom-ref"]]
    assert deps["runtime:micropython"] == {"runtime:mbedtls"}
    # a package that imports no micropython-lib module names none
    plain = _sbom(tmp_path / "b", uses_ssl=False)
    assert {c["bom-ref"] for c in plain["components"] if c["type"] != "file"} == {
        "runtime:micropython", "runtime:mbedtls"}
