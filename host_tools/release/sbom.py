"""CycloneDX 1.6 SBOM of a package (cyclonedx-python-lib), byte-reproducible.

The serial number is a UUIDv5 of the package identity and file hashes, the
timestamp is ``SOURCE_DATE_EPOCH`` (0 unless given) and the JSON is written with
sorted keys, so the same inputs give the same bytes.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.dependency import Dependency
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from .runtime import components as runtime_components

SBOM_FORMAT = "CycloneDX-1.6+json"


def make_sbom(
    *,
    model: str,
    version: str,
    compatible_models: list[str],
    security_counter: int,
    min_base_version: str,
    files: list[dict],
    runtime: str,
    source_date_epoch: int = 0,
    lib_modules: list[str] | None = None,
    runtime_manifest: dict | None = None,
) -> bytes:
    """SBOM listing the firmware package, the runtime it runs on and every
    file of the full slot.

    `files`: manifest entries (path, size, sha256). `runtime`: the bytecode
    compiler (e.g. ``MicroPython v1.29.0 (mpy-cross emitting mpy v6.3)``),
    kept as a property of the MicroPython component. The runtime components
    (MicroPython, its mbedTLS, the micropython-lib modules in `lib_modules`,
    the ones the package imports) come from runtime.json (:mod:`.runtime`), or
    from `runtime_manifest` (same shape) for a package built for another VM."""
    identity = json.dumps(
        [model, version, security_counter, [(f["path"], f["sha256"]) for f in files]],
        separators=(",", ":"),
    )
    serial = uuid.uuid5(uuid.NAMESPACE_URL, "urn:medsentry:sbom:" + identity)
    package = Component(
        type=ComponentType.FIRMWARE,
        name=f"medsentry-{model}",
        version=version,
        bom_ref=f"medsentry-{model}@{version}",
        description="medsentry device software (security agent + updater) for " + ", ".join(compatible_models),
        properties=[
            Property(name="medsentry:security_counter", value=str(security_counter)),
            Property(name="medsentry:min_base_version", value=min_base_version),
            Property(name="medsentry:compatible_models", value=",".join(compatible_models)),
        ],
    )
    rt = runtime_components(runtime_manifest)
    wanted = ["runtime:micropython", "runtime:mbedtls"] + ["micropython-lib:" + n for n in sorted(lib_modules or [])]
    runtime_cs = {}
    for ref in wanted:
        r = rt[ref]
        props = [Property(name="medsentry:mpy_cross", value=runtime)] if ref == "runtime:micropython" else []
        runtime_cs[ref] = Component(
            type=ComponentType.PLATFORM if r.kind == "platform" else ComponentType.LIBRARY,
            name=r.name,
            version=r.version,
            bom_ref=r.key,
            purl=PackageURL.from_string(r.purl),
            cpe=r.cpe,
            description=r.description,
            properties=props,
        )
    runtime_c = runtime_cs["runtime:micropython"]
    file_components = [
        Component(
            type=ComponentType.FILE,
            name=f["path"],
            version=version,
            bom_ref=f"file:{f['path']}",
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=f["sha256"])],
            properties=[Property(name="medsentry:size", value=str(f["size"]))],
        )
        for f in files
    ]
    bom = Bom(
        serial_number=serial,
        metadata=BomMetaData(
            component=package,
            timestamp=datetime.fromtimestamp(source_date_epoch, timezone.utc),
        ),
        components=[*runtime_cs.values(), *file_components],
    )
    bom.dependencies.add(
        Dependency(
            ref=package.bom_ref,
            dependencies=[Dependency(ref=c.bom_ref) for c in runtime_cs.values()]
            + [Dependency(ref=c.bom_ref) for c in file_components],
        )
    )
    # the VM carries its mbedTLS; a micropython-lib module runs on the VM
    bom.dependencies.add(Dependency(ref=runtime_c.bom_ref, dependencies=[Dependency(ref=runtime_cs["runtime:mbedtls"].bom_ref)]))
    for ref, c in runtime_cs.items():
        if ref.startswith("micropython-lib:"):
            bom.dependencies.add(Dependency(ref=c.bom_ref, dependencies=[Dependency(ref=runtime_c.bom_ref)]))
    text = JsonV1Dot6(bom).output_as_string(indent=None)
    # re-dump with sorted keys: stable bytes regardless of the library's key order
    return (json.dumps(json.loads(text), sort_keys=True, separators=(",", ":")) + "\n").encode()
