"""The medsentry package container (see PACKAGE_FORMAT.md): writing, reading and
full verification. No signing here: authenticity comes from TUF (the target's
hashes and the ``manifest_sha256`` custom field)."""
from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, PackageFormatError, PackageIntegrityError, SlotTooSmall
from .inputs import InputError, read_regular
from .versions import parse_version

MAGIC = b"MSPK"
FORMAT_VERSION = 1
HEADER = struct.Struct(">4sBBHI32s")  # magic, format, flags, reserved, manifest_len, manifest_sha256
HEADER_SIZE = HEADER.size  # 44
# The device's caps (updater/install/manifest.py): beyond them the manifest
# would not fit the install's heap budget on a 256 KiB heap.
MAX_MANIFEST = 24 * 1024
MAX_FILES = 80
MAX_FILE_SIZE = 16 * 1024 * 1024  # per file (and SBOM), uncompressed
MAX_PACKAGE_BYTES = 64 * 1024 * 1024  # a package file larger than this is refused unread
SLOT_BLOCK = 4096  # erase block of the board's flash (board/sim/flash.py)
WBITS = 10  # 1 KiB deflate window: what the device must allocate to inflate
LEVEL = 9
FORMAT_NAME = "medsentry-package/1"
MODEL_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
RESERVED_MODEL_NAMES = {"root", "targets", "snapshot", "timestamp", "recalls"}
_PATH_RE = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


def check_model(name: str) -> str:
    """Model names become TUF role names and target directories."""
    if (
        not MODEL_RE.match(name or "")
        or len(name) > 40
        or name in RESERVED_MODEL_NAMES
        or name.startswith("root-")
    ):
        raise ConfigError(
            f"not a valid model name: {name!r} (lower-case letters, digits and single dashes, "
            "e.g. pump-v2; not a TUF role name)"
        )
    return name


def check_path(path: str) -> str:
    if not _PATH_RE.match(path) or any(part in (".", "..") for part in path.split("/")):
        raise PackageFormatError(f"unsafe or invalid file path in package: {path!r}")
    return path


def canonical_json(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def compress(data: bytes) -> bytes:
    """zlib stream (RFC 1950) with a 1 KiB window: MicroPython's
    ``deflate.DeflateIO(stream, deflate.ZLIB)`` inflates it with a 1 KiB buffer."""
    c = zlib.compressobj(LEVEL, zlib.DEFLATED, WBITS, 9, zlib.Z_DEFAULT_STRATEGY)
    return c.compress(data) + c.flush()


def decompress(blob: bytes, size: int) -> bytes:
    d = zlib.decompressobj(WBITS)
    try:
        out = d.decompress(blob, size + 1)
    except zlib.error as exc:
        raise PackageIntegrityError(f"corrupt compressed data: {exc}") from None
    if not d.eof or d.unused_data or d.unconsumed_tail or len(out) != size:
        raise PackageIntegrityError("compressed data does not inflate to exactly the recorded size")
    return out


def write_package(manifest: dict, contents: dict[str, bytes], sbom: bytes) -> bytes:
    """Assemble a package. `manifest["files"]` entries with ``stored`` true get
    their data from `contents`; offset/csize are filled in here."""
    manifest = json.loads(json.dumps(manifest))  # deep copy
    data = io.BytesIO()
    for entry in manifest["files"]:
        if entry["stored"]:
            blob = compress(contents[entry["path"]])
            entry["offset"], entry["csize"] = data.tell(), len(blob)
            data.write(blob)
    blob = compress(sbom)
    manifest["sbom"] = {
        "format": "CycloneDX-1.6+json",
        "offset": data.tell(),
        "csize": len(blob),
        "size": len(sbom),
        "sha256": hashlib.sha256(sbom).hexdigest(),
    }
    data.write(blob)
    mbytes = canonical_json(manifest)
    if len(manifest["files"]) > MAX_FILES:
        raise PackageFormatError(
            f"{len(manifest['files'])} files; a device slot takes at most {MAX_FILES} (merge small modules)")
    if len(mbytes) > MAX_MANIFEST:
        raise PackageFormatError(f"manifest is {len(mbytes)} bytes; the limit is {MAX_MANIFEST} (shorter paths or fewer files)")
    header = HEADER.pack(MAGIC, FORMAT_VERSION, 0, 0, len(mbytes), hashlib.sha256(mbytes).digest())
    return header + mbytes + data.getvalue()


@dataclass
class PackageInfo:
    """A verified package."""

    path: Path | None
    data: bytes
    manifest: dict
    manifest_bytes: bytes

    @property
    def model(self) -> str:
        return self.manifest["model"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def security_counter(self) -> int:
        return self.manifest["security_counter"]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def manifest_sha256(self) -> str:
        return hashlib.sha256(self.manifest_bytes).hexdigest()

    @property
    def data_offset(self) -> int:
        return HEADER_SIZE + len(self.manifest_bytes)

    def blob(self, entry: dict) -> bytes:
        start = self.data_offset + entry["offset"]
        return self.data[start : start + entry["csize"]]

    def file(self, path: str) -> bytes:
        for entry in self.manifest["files"]:
            if entry["path"] == path:
                if not entry["stored"]:
                    raise KeyError(f"{path} is not carried by this patch package")
                return decompress(self.blob(entry), entry["size"])
        raise KeyError(path)

    def sbom(self) -> bytes:
        s = self.manifest["sbom"]
        return decompress(self.blob(s), s["size"])


def parse_header(data: bytes) -> tuple[dict, bytes]:
    if len(data) < HEADER_SIZE:
        raise PackageFormatError("not a medsentry package: too short")
    magic, fmt, flags, reserved, mlen, mhash = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise PackageFormatError("not a medsentry package: bad magic")
    if fmt != FORMAT_VERSION or flags or reserved:
        raise PackageFormatError(f"unsupported package format version {fmt} (flags {flags})")
    if mlen > MAX_MANIFEST or HEADER_SIZE + mlen > len(data):
        raise PackageFormatError("manifest length out of range")
    mbytes = data[HEADER_SIZE : HEADER_SIZE + mlen]
    if hashlib.sha256(mbytes).digest() != mhash:
        raise PackageIntegrityError("the manifest does not match its hash in the package header")
    try:
        manifest = json.loads(mbytes)
    except (ValueError, RecursionError):
        raise PackageFormatError("the manifest is not valid JSON") from None
    if canonical_json(manifest) != mbytes:
        raise PackageFormatError("the manifest is not in canonical form")
    return manifest, mbytes


def _need(doc: dict, key: str, typ: type | tuple, where: str = "manifest"):
    if key not in doc or not isinstance(doc[key], typ) or isinstance(doc[key], bool) and typ is int:
        raise PackageFormatError(f"{where}: field {key!r} missing or of the wrong type")
    return doc[key]


def validate_manifest(m: dict) -> None:
    if not isinstance(m, dict) or m.get("format") != FORMAT_NAME:
        raise PackageFormatError(f"manifest: format is not {FORMAT_NAME!r}")
    try:
        check_model(_need(m, "model", str))
        models = _need(m, "compatible_models", list)
        for name in models:
            check_model(name)
        parse_version(_need(m, "version", str))
        parse_version(_need(m, "min_base_version", str))
    except ConfigError as exc:
        raise PackageFormatError(f"manifest: {exc}") from None
    if m["model"] not in models:
        raise PackageFormatError("manifest: model is not among compatible_models")
    counter = _need(m, "security_counter", int)
    if counter < 0:
        raise PackageFormatError("manifest: security_counter is negative")
    kind = _need(m, "kind", str)
    if kind not in ("full", "patch"):
        raise PackageFormatError("manifest: kind must be 'full' or 'patch'")
    if kind == "patch":
        base = _need(m, "base_version", str)
        try:
            if parse_version(base) >= parse_version(m["version"]):
                raise PackageFormatError("manifest: a patch's base_version must be below its version")
        except ConfigError as exc:
            raise PackageFormatError(f"manifest: {exc}") from None
    elif m.get("base_version") is not None:
        raise PackageFormatError("manifest: a full package has no base_version")
    comp = _need(m, "compression", dict)
    if comp != {"method": "zlib", "wbits": WBITS}:
        raise PackageFormatError(f"manifest: unsupported compression {comp}")
    files = _need(m, "files", list)
    if not files:
        raise PackageFormatError("manifest: no files")
    if len(files) > MAX_FILES:
        raise PackageFormatError(f"manifest: {len(files)} files, more than the {MAX_FILES} a device takes")
    seen = set()
    for f in files:
        if not isinstance(f, dict):
            raise PackageFormatError("manifest: bad file entry")
        path = check_path(_need(f, "path", str, "file entry"))
        if path in seen:
            raise PackageFormatError(f"manifest: duplicate file {path}")
        seen.add(path)
        if not 0 <= _need(f, "size", int, path) <= MAX_FILE_SIZE:
            raise PackageFormatError(f"{path}: size out of range (0..{MAX_FILE_SIZE})")
        if not re.fullmatch(r"[0-9a-f]{64}", _need(f, "sha256", str, path)):
            raise PackageFormatError(f"{path}: sha256 is not 64 hex digits")
        stored = _need(f, "stored", bool, path)
        if stored:
            _need(f, "offset", int, path)
            _need(f, "csize", int, path)
        elif kind == "full":
            raise PackageFormatError(f"{path}: a full package must carry every file")
    if [f["path"] for f in files] != sorted(seen):
        raise PackageFormatError("manifest: files are not sorted by path")
    sb = _need(m, "sbom", dict)
    for key in ("offset", "csize", "size"):
        _need(sb, key, int, "sbom")
    if not 0 <= sb["size"] <= MAX_FILE_SIZE:
        raise PackageFormatError("sbom: size out of range")
    _need(sb, "sha256", str, "sbom")


def read_package(path: Path, slot_bytes: Callable[[str], int] | None = None) -> PackageInfo:
    """Read and fully verify a package file (see :func:`verify_package_bytes`).
    Only a regular file of at most MAX_PACKAGE_BYTES is read; with `slot_bytes`
    (model -> slot size) a package whose files cannot fit its model's slot is
    refused before anything is inflated."""
    try:
        data = read_regular(Path(path), MAX_PACKAGE_BYTES, "package")
    except InputError as exc:
        raise PackageFormatError(str(exc)) from None
    info = verify_package_bytes(data, slot_bytes)
    info.path = Path(path)
    return info


def slot_need(manifest: dict, manifest_len: int, block: int = SLOT_BLOCK) -> int:
    """Bytes of littlefs slot an install of `manifest` needs at its peak: every
    file of the slot, the largest download blob beside them, the manifest and
    slot.json, a metadata pair per directory and the superblock (each file
    rounded up to whole blocks, 16 bytes per block kept for littlefs' pointers)."""
    per = block - 16

    def blocks(n: int) -> int:
        return max(1, -(-n // per))

    files = manifest["files"]
    dirs = {"/".join(f["path"].split("/")[:i]) for f in files for i in range(1, f["path"].count("/") + 1)}
    n = sum(blocks(f["size"]) for f in files)
    n += max((blocks(f.get("csize", f["size"])) for f in files if f.get("stored")), default=0)
    n += blocks(manifest_len) + 2 + 2 * (len(dirs) + 1) + 2
    return n * block


def check_fits_slot(manifest: dict, manifest_len: int, slot_bytes: int) -> None:
    need = slot_need(manifest, manifest_len)
    if need > slot_bytes:
        total = sum(f["size"] for f in manifest["files"])
        raise SlotTooSmall(
            f"{manifest['model']} {manifest['version']}: {len(manifest['files'])} files of {total} bytes need "
            f"{need} bytes of slot; the {manifest['model']} slot holds {slot_bytes} "
            "(release config slot_size, `medsentry repo slot-size`)")


def verify_package_bytes(data: bytes, slot_bytes: Callable[[str], int] | None = None) -> PackageInfo:
    """Check header, manifest, that the files fit the model's slot (when
    `slot_bytes` is given), and that every carried file inflates to exactly
    its recorded size and sha256, that the blobs tile the data section with no
    gap, overlap or trailing bytes, and the same for the SBOM."""
    manifest, mbytes = parse_header(data)
    validate_manifest(manifest)
    if slot_bytes is not None:
        check_fits_slot(manifest, len(mbytes), slot_bytes(manifest["model"]))
    info = PackageInfo(None, data, manifest, mbytes)
    data_len = len(data) - info.data_offset
    pos = 0
    for entry in [f for f in manifest["files"] if f["stored"]] + [manifest["sbom"]]:
        name = entry.get("path", "sbom")
        if entry["offset"] != pos or entry["csize"] <= 0 or pos + entry["csize"] > data_len:
            raise PackageIntegrityError(f"{name}: compressed data is not where the manifest says")
        pos += entry["csize"]
        try:
            content = decompress(info.blob(entry), entry["size"])
        except PackageIntegrityError as exc:
            raise PackageIntegrityError(f"{name}: {exc}") from None
        if hashlib.sha256(content).hexdigest() != entry["sha256"]:
            raise PackageIntegrityError(f"{name}: content does not match its sha256 in the manifest")
    if pos != data_len:
        raise PackageIntegrityError("the package has bytes after its last file")
    return info
