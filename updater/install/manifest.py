# The package header and manifest, checked on the device.
#
# Package container (host_tools/release/PACKAGE_FORMAT.md):
#   header (44 bytes, big-endian): magic "MSPK", format 1, flags 0, reserved 0,
#     manifest length (u32), sha256 of the manifest (32 bytes)
#   manifest: canonical JSON (sorted keys, no spaces)
#   data: for each file with "stored": true, in manifest order, a zlib stream
#     (1 KiB window) at "offset" (relative to the end of the manifest) of
#     "csize" bytes; then the compressed SBOM.
# The manifest's sha256 is also a custom field of the TUF target
# ("manifest_sha256"), signed by the model's targets role: it is checked
# against the TUF-verified value before anything in it is trusted, and every
# installed file is checked against the sha256 the manifest lists.
import struct
import json
import hashlib
import binascii

from updater import bootstate
from updater.install.errors import PackageError, TransferError

MAGIC = b"MSPK"
FORMAT_VERSION = 1
HEADER_FMT = ">4sBBHI32s"
HEADER_SIZE = 44
# Caps that keep an install's heap within 64 KiB above idle on a 256 KiB
# heap (tests/e2e/test_update_heap.py measures an update at these caps): the
# parsed manifest is the largest thing an install holds. The release
# tooling refuses to build a package beyond them.
MAX_MANIFEST = 24 * 1024  # bytes, streamed to flash and parsed from there
MAX_FILES = 80
FORMAT_NAME = "medsentry-package/1"
WBITS = 10
# Top-level names the installer writes itself (updater/install/slot.py:
# SLOT_INFO, SLOT_MANIFEST): slot.json is what makes a slot bootable.
RESERVED = ("slot.json", "slot.json.tmp", "manifest.json", "manifest.json.tmp")


def parse_version(text):
    # "X.Y.Z" -> (X, Y, Z); PackageError when malformed.
    if not isinstance(text, str):
        raise PackageError("version is not a string")
    parts = text.split(".")
    if len(parts) != 3:
        raise PackageError("bad version %r" % text)
    out = []
    for p in parts:
        if not p.isdigit() or len(p) > 6 or (len(p) > 1 and p[0] == "0"):
            raise PackageError("bad version %r" % text)
        out.append(int(p))
    return tuple(out)


def parse_header(head):
    # head: the first HEADER_SIZE bytes -> (manifest_len, manifest_sha256 bytes)
    # The header is not signed itself (the manifest hash it carries is
    # checked against the signed one next): a bad header is bad bytes on the
    # way, retried, never a reason to refuse the release.
    if len(head) < HEADER_SIZE:
        raise TransferError("package too short for its header")
    magic, fmt, flags, reserved, mlen, mhash = struct.unpack(HEADER_FMT, bytes(head[:HEADER_SIZE]))
    if magic != MAGIC:
        raise TransferError("not a medsentry package (bad magic)")
    if fmt != FORMAT_VERSION or flags or reserved:
        raise TransferError("unsupported package format %d" % fmt)
    if mlen == 0 or mlen > MAX_MANIFEST:
        raise TransferError("manifest length %d out of range (max %d)" % (mlen, MAX_MANIFEST))
    return mlen, mhash


def _need(d, key, kind, where):
    v = d.get(key) if isinstance(d, dict) else None
    if kind is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    else:
        ok = isinstance(v, kind)
    if not ok:
        raise PackageError("%s: field %r missing or of the wrong type" % (where, key))
    return v


def _check_path(p):
    if not p or len(p) > 96 or p.startswith("/") or p.endswith("/"):
        raise PackageError("unsafe file path %r" % p)
    for part in p.split("/"):
        if part in ("", ".", "..") or part.startswith("."):
            raise PackageError("unsafe file path %r" % p)
        for ch in part:
            # ASCII only, as the package format says (str.isalpha() would
            # accept any Unicode letter on CPython, not on MicroPython).
            if not ("a" <= ch <= "z" or "A" <= ch <= "Z" or "0" <= ch <= "9" or ch in "_-."):
                raise PackageError("unsafe file path %r" % p)
    return p


def _is_hex64(s):
    if not isinstance(s, str) or len(s) != 64:
        return False
    for ch in s:
        if ch not in "0123456789abcdef":
            return False
    return True


def load_manifest(f, digest, header_hash, expected_hex):
    # Check the manifest's sha256 (computed while it streamed into the open
    # binary file f) against the header and the TUF-signed hash, then parse
    # f and validate it. Returns the manifest dict. Bytes that are not the
    # signed manifest are a bad transfer (TransferError, retried); a signed
    # manifest that is invalid is the release's own fault. Parsed from the
    # stream: the raw bytes never need one contiguous buffer.
    if digest != header_hash:
        raise TransferError("manifest does not match the hash in the package header")
    if expected_hex is not None and binascii.hexlify(digest).decode() != expected_hex:
        raise TransferError("manifest does not match the manifest_sha256 signed in TUF metadata")
    try:
        m = json.load(f)
    except ValueError:
        raise PackageError("manifest is not valid JSON")
    validate(m)
    return m


def validate(m):
    if not isinstance(m, dict) or m.get("format") != FORMAT_NAME:
        raise PackageError("manifest format is not %s" % FORMAT_NAME)
    _need(m, "model", str, "manifest")
    models = _need(m, "compatible_models", list, "manifest")
    parse_version(_need(m, "version", str, "manifest"))
    parse_version(_need(m, "min_base_version", str, "manifest"))
    if _need(m, "security_counter", int, "manifest") < 0:
        raise PackageError("negative security counter")
    kind = _need(m, "kind", str, "manifest")
    if kind not in ("full", "patch"):
        raise PackageError("unknown package kind %r" % kind)
    if "entry" in m and not bootstate.valid_entry(m["entry"]):
        raise PackageError("manifest entry %r is not a module name" % (m["entry"],))
    comp = _need(m, "compression", dict, "manifest")
    if comp.get("method") != "zlib" or comp.get("wbits") != WBITS:
        raise PackageError("unsupported compression %r" % comp)
    files = _need(m, "files", list, "manifest")
    if not files or len(files) > MAX_FILES:
        raise PackageError("manifest lists %d files (1..%d allowed)" % (len(files), MAX_FILES))
    prev = ""
    pos = 0
    dirs = {}  # every directory the files need
    for f in files:
        path = _check_path(_need(f, "path", str, "file entry"))
        if path <= prev:
            raise PackageError("files not sorted or duplicated at %s" % path)
        prev = path
        if path in RESERVED:
            raise PackageError("%s: name reserved for the installer's own records" % path)
        k = path.find("/")
        while k > 0:
            dirs[path[:k]] = True
            k = path.find("/", k + 1)
        if _need(f, "size", int, path) < 0:
            raise PackageError("%s: negative size" % path)
        if not _is_hex64(f.get("sha256")):
            raise PackageError("%s: sha256 is not 64 hex digits" % path)
        stored = f.get("stored")
        if not isinstance(stored, bool):
            raise PackageError("%s: 'stored' missing" % path)
        if stored:
            off = _need(f, "offset", int, path)
            csize = _need(f, "csize", int, path)
            # Blobs tile the data section in manifest order.
            if off != pos or csize <= 0:
                raise PackageError("%s: compressed data not where expected" % path)
            pos += csize
        elif kind == "full":
            raise PackageError("%s: a full package must carry every file" % path)
    # A path both a file and the directory of another file cannot be laid
    # out (it would end in an OSError half way through the install).
    for f in files:
        if f["path"] in dirs:
            raise PackageError("%s is both a file and a directory" % f["path"])
    for name in models:
        if not isinstance(name, str):
            raise PackageError("bad compatible model")
    return m
