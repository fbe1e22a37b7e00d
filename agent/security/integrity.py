# Incremental code-integrity scan of the active slot and the loader against
# the signed slot manifest (issue 12 section 1).
#
# Trust chain: slot.json names the manifest's sha256 (the value the TUF
# targets role signed, checked by the installer); manifest.json must hash to
# it; every file the manifest lists must have its sha256 and size; any other
# file in the slot is "added". The loader partition's loader.mpy and
# bootstate.mpy are checked against the manifest's updater/loader.mpy and
# updater/bootstate.mpy (the same sources, compiled the same way).
#
# step(budget_ms) does at most ~budget_ms of work (1 KiB reads), keeping an
# open file and a running hash between calls, so the agent's 1 Hz tick never
# blocks long. One scan = a pass over every file; `result` holds the last
# complete one: {"ok", "files", "bad": ["~path", "+path", "-path"], "scans"}.
import binascii
import hashlib
import json
import os

from board.compat import ticks_ms, ticks_diff

CHUNK = 1024
LOADER_FILES = (("loader.mpy", "updater/loader.mpy"), ("bootstate.mpy", "updater/bootstate.mpy"))
SKIP = ("slot.json", "manifest.json", "slot.json.tmp", "manifest.json.tmp")
MAX_BAD = 4


def _is_dir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def walk(path, prefix=""):
    out = []
    for name in sorted(os.listdir(path)):
        p = path + "/" + name
        if _is_dir(p):
            out.extend(walk(p, prefix + name + "/"))
        else:
            out.append(prefix + name)
    return out


class Scanner:
    def __init__(self, slot_path, loader_path=None):
        self.slot = slot_path
        self.loader = loader_path
        self.buf = bytearray(CHUNK)
        self.result = None  # last complete scan
        self.scans = 0
        self.started = None
        self._todo = None  # [(loader name or None, path, sha256 bytes, size)], scanned from the end
        self._bad = None
        self._files = 0
        self._f = None
        self._h = None
        self._n = 0
        self.max_step_ms = 0

    def running(self):
        return self._todo is not None

    def _start(self):
        # Manifest checks and the list of files to hash (one parse per scan).
        bad = []
        todo = []
        try:
            with open(self.slot + "/slot.json") as f:
                want = json.loads(f.read()).get("manifest_sha256")
            h = hashlib.sha256()
            with open(self.slot + "/manifest.json", "rb") as f:
                data = f.read()
            h.update(data)
            if binascii.hexlify(h.digest()).decode() != want:
                bad.append("~manifest.json")
            files = json.loads(data)["files"]
            data = None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self._finish_now(["~manifest.json"])
            return
        listed = {}
        for e in files:
            listed[e["path"]] = 1
            todo.append((None, e["path"], binascii.unhexlify(e["sha256"]), e["size"]))
        try:
            present = walk(self.slot)
        except OSError:
            present = []
        for rel in present:
            if rel not in listed and rel not in SKIP:
                bad.append("+" + rel)
        if self.loader:
            for name, rel in LOADER_FILES:
                for e in files:
                    if e["path"] == rel:
                        todo.append((name, "loader/" + name, binascii.unhexlify(e["sha256"]), e["size"]))
        files = listed = present = None
        self._todo = todo
        self._bad = bad
        self._files = 0

    def _finish_now(self, bad):
        self.scans += 1
        self.result = {"ok": not bad, "files": 0, "bad": bad[:MAX_BAD], "nbad": len(bad), "scans": self.scans}
        self._todo = None

    def step(self, budget_ms=30):
        # Advance the scan; True when a scan completed in this call.
        t0 = ticks_ms()
        done = False
        if self._todo is None:
            self.started = t0
            self._start()
            if self._todo is None:
                done = True
        while self._todo is not None and ticks_diff(ticks_ms(), t0) < budget_ms:
            if not self._todo:
                self.scans += 1
                bad = self._bad
                self.result = {"ok": not bad, "files": self._files, "bad": bad[:MAX_BAD], "nbad": len(bad),
                               "scans": self.scans}
                self._todo = None
                self._bad = None
                done = True
                break
            self._hash_some(t0, budget_ms)
        d = ticks_diff(ticks_ms(), t0)
        if d > self.max_step_ms:
            self.max_step_ms = d
        return done

    def _hash_some(self, t0, budget_ms):
        name, rel, want, size = self._todo[-1]
        if self._f is None:
            path = (self.slot + "/" + rel) if name is None else (self.loader + "/" + name)
            try:
                self._f = open(path, "rb")
            except OSError:
                self._todo.pop()
                self._bad.append("-" + rel)
                return
            self._h = hashlib.sha256()
            self._n = 0
        f = self._f
        mv = memoryview(self.buf)
        while ticks_diff(ticks_ms(), t0) < budget_ms:
            n = f.readinto(self.buf)
            if not n:
                f.close()
                self._f = None
                self._todo.pop()
                self._files += 1
                if self._n != size or self._h.digest() != want:
                    self._bad.append("~" + rel)
                return
            self._h.update(mv[:n])
            self._n += n
