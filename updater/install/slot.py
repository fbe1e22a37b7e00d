# File operations on an application slot, all streaming through one small
# caller-owned buffer, all verified by sha256.
import os
import hashlib
import binascii

from updater.install.errors import SlotError, TransferError
from updater.install.inflate import open_inflate

SLOT_INFO = "slot.json"
SLOT_MANIFEST = "manifest.json"
BLOB = ".blob"  # compressed bytes of the file being downloaded


def _is_dir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _rmtree(path):
    for name in os.listdir(path):
        p = path + "/" + name
        if _is_dir(p):
            _rmtree(p)
            os.rmdir(p)
        else:
            os.remove(p)


def clear(slot_path):
    # Invalidate first (slot.json is what makes a slot bootable), then empty.
    remove(slot_path + "/" + SLOT_INFO)
    remove(slot_path + "/" + SLOT_MANIFEST)
    _rmtree(slot_path)


def is_full(e):
    # OSError ENOSPC (the same errno on littlefs, the unix VM and CPython).
    return isinstance(e, OSError) and bool(e.args) and e.args[0] == 28


def check_capacity(slot_path, manifest):
    # Refuse up front a package whose files add up to more than the whole
    # slot partition: it can never fit (littlefs' own blocks come on top, so
    # a package that passes may still fill the slot; the installer turns that
    # ENOSPC into SlotError too).
    need = 0
    for e in manifest["files"]:
        need += e["size"]
    try:
        st = os.statvfs(slot_path)
    except (OSError, AttributeError):
        return
    cap = st[1] * st[2]  # f_frsize * f_blocks
    if need > cap:
        raise SlotError("the package needs %d bytes, the slot holds %d" % (need, cap))


def makedirs_for(slot_path, rel):
    parts = rel.split("/")[:-1]
    cur = slot_path
    for p in parts:
        cur = cur + "/" + p
        if not _is_dir(cur):
            os.mkdir(cur)


def hash_file(path, buf):
    # (sha256 hex, size) of a file, or (None, -1) when it cannot be read.
    h = hashlib.sha256()
    size = 0
    mv = memoryview(buf)
    try:
        with open(path, "rb") as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                h.update(mv[:n])
                size += n
    except OSError:
        return None, -1
    return binascii.hexlify(h.digest()).decode(), size


class _TooLong(Exception):
    pass


def _stream_to(reader, tmp, entry, buf):
    # Copy reader -> tmp through buf, hashing; stops past entry["size"].
    # Returns (sha256 hex, size).
    h = hashlib.sha256()
    size = 0
    mv = memoryview(buf)
    with open(tmp, "wb") as fo:
        while True:
            n = reader.readinto(buf)
            if not n:
                break
            size += n
            if size > entry["size"]:
                raise _TooLong()
            h.update(mv[:n])
            fo.write(mv[:n])
    return binascii.hexlify(h.digest()).decode(), size


def _matches(got, entry):
    return got[0] == entry["sha256"] and got[1] == entry["size"]


def copy_verified(src, dst, entry, buf):
    # Copy src to dst (via dst.tmp + rename) and check sha256 and size.
    # Returns False (nothing left behind) when src does not match.
    tmp = dst + ".tmp"
    try:
        with open(src, "rb") as fi:
            got = _stream_to(fi, tmp, entry, buf)
    except (OSError, _TooLong):
        remove(tmp)
        return False
    if not _matches(got, entry):
        remove(tmp)
        return False
    os.rename(tmp, dst)
    return True


def inflate_verified(blob_path, dst, entry, buf, wbits):
    # Inflate blob_path into dst (via dst.tmp + rename), refusing more bytes
    # than the manifest says (a decompression bomb stops at entry["size"]).
    # Bytes that do not inflate to what the signed manifest lists are a bad
    # transfer (TransferError): the caller drops them and fetches again.
    tmp = dst + ".tmp"
    try:
        with open(blob_path, "rb") as fi:
            got = _stream_to(open_inflate(fi, wbits), tmp, entry, buf)
    except _TooLong:
        remove(tmp)
        raise TransferError("%s inflates beyond its %d bytes" % (entry["path"], entry["size"]))
    except (OSError, ValueError) as e:
        remove(tmp)
        if is_full(e):
            raise SlotError("slot full while writing %s" % entry["path"])
        raise TransferError("%s: corrupt compressed data (%r)" % (entry["path"], e))
    if not _matches(got, entry):
        remove(tmp)
        raise TransferError("%s does not match its sha256/size in the manifest" % entry["path"])
    os.rename(tmp, dst)


def walk_files(path, prefix=""):
    # Relative paths of all files under path, one at a time: only the
    # listing of the directories on the way down is held, never the whole
    # tree's (an 80-file slot's path list was what a verify ran out of heap on).
    for name in os.listdir(path):
        p = path + "/" + name
        rel = prefix + name
        if _is_dir(p):
            for sub in walk_files(p, rel + "/"):
                yield sub
        else:
            yield rel


def verify(slot_path, manifest, buf):
    # Every manifest file present with the right hash; strays removed.
    wanted = {}
    for e in manifest["files"]:
        wanted[e["path"]] = e
    for rel in walk_files(slot_path):
        if rel not in wanted and rel not in (SLOT_INFO, SLOT_MANIFEST):
            os.remove(slot_path + "/" + rel)
    for path in wanted:
        e = wanted[path]
        sha, size = hash_file(slot_path + "/" + path, buf)
        if sha != e["sha256"] or size != e["size"]:
            raise SlotError("%s in the new slot does not verify" % path)
