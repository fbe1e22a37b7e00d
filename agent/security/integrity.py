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
# blocks long. RAM: the manifest is never parsed as a whole: its file
# entries are read one at a time from the canonical JSON
# ("path":"...","sha256":"...","size":N, sorted keys); only the set of listed
# paths is kept during a scan (for "added" files). `result` holds the last
# complete scan: {"ok", "files", "bad": ["~path", "+path", "-path"], "nbad",
# "scans"}.
import binascii
import hashlib
import json
import os

from board.compat import ticks_ms, ticks_diff

CHUNK = 1024
LOADER_FILES = (("loader.mpy", "updater/loader.mpy"), ("bootstate.mpy", "updater/bootstate.mpy"))
SKIP = ("slot.json", "manifest.json", "slot.json.tmp", "manifest.json.tmp")
MAX_BAD = 4
_P = b'"path":"'
_S = b'"sha256":"'
_Z = b'"size":'


class ManifestEntries:
    # The file entries of a canonical manifest.json, one at a time.
    def __init__(self, path):
        self.f = open(path, "rb")
        self.tail = b""

    def close(self):
        self.f.close()

    def next(self):
        # -> (path, sha256 bytes, size) or None at the end; ValueError if garbled.
        while True:
            t = self.tail
            i = t.find(_P)
            if i >= 0:
                j = t.find(_Z, i)
                if j >= 0:
                    k = j + len(_Z)
                    while k < len(t) and 48 <= t[k] <= 57:
                        k += 1
                    if k < len(t):
                        p_end = t.find(b'"', i + len(_P))
                        s = t.find(_S, p_end)
                        if p_end < 0 or s < 0 or s > j:
                            raise ValueError("garbled manifest entry")
                        s += len(_S)
                        entry = (t[i + len(_P):p_end].decode(), binascii.unhexlify(t[s:s + 64]), int(t[j + len(_Z):k]))
                        self.tail = t[k:]
                        return entry
            chunk = self.f.read(512)
            if not chunk:
                return None
            if len(t) > 2048:
                raise ValueError("manifest entry too long")
            self.tail = (t[i:] if i >= 0 else t[-8:]) + chunk


def _is_dir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


class Scanner:
    def __init__(self, slot_path, loader_path=None):
        self.slot = slot_path
        self.loader = loader_path
        self.buf = bytearray(CHUNK)
        self.result = None  # last complete scan
        self.scans = 0
        self.started = None
        self.max_step_ms = 0
        self._reset()

    def _reset(self):
        self._entries = None  # None: no scan; "pending", ManifestEntries, False while one runs
        self._cur = None  # (file path, display path, sha256, size) being hashed
        self._listed = None
        self._loader = None
        self._dirs = None
        self._bad = None
        self._files = 0
        self._f = None
        self._h = None
        self._n = 0

    def running(self):
        return self._entries is not None

    def abort(self):
        # Drop a scan in progress (out of memory): the next step starts over.
        for f in (self._f, self._entries):
            if isinstance(f, ManifestEntries) or (f and hasattr(f, "close")):
                f.close()
        self._reset()

    def _start(self):
        # slot.json only; the manifest is hashed as the scan's first file.
        self._bad = []
        try:
            with open(self.slot + "/slot.json") as f:
                want = binascii.unhexlify(json.loads(f.read()).get("manifest_sha256"))
        except (OSError, ValueError, TypeError, AttributeError):
            self._bad.append("~slot.json")
            self._finish()
            return
        self._entries = "pending"  # then a ManifestEntries, then False (done)
        self._listed = set()
        self._loader = []
        self._dirs = None
        self._cur = (self.slot + "/manifest.json", "manifest.json", want, None)

    def _finish(self):
        if isinstance(self._entries, ManifestEntries):
            self._entries.close()
        bad = self._bad
        self.scans += 1
        self.result = {"ok": not bad, "files": self._files, "bad": bad[:MAX_BAD], "nbad": len(bad),
                       "scans": self.scans}
        self._reset()

    def _walk_one(self):
        # One directory of the slot per call: files the manifest does not list.
        # -> False when the walk is complete.
        if self._dirs is None:
            self._dirs = [(self.slot, "")]
        if not self._dirs:
            return False
        path, prefix = self._dirs.pop()
        try:
            names = os.listdir(path)
        except OSError:
            return True
        for name in names:
            rel = prefix + name
            p = path + "/" + name
            if _is_dir(p):
                self._dirs.append((p, rel + "/"))
            elif rel not in self._listed and rel not in SKIP:
                self._bad.append("+" + rel)
        return True

    def _next(self):
        # The next file to hash, or None when only the walk is left.
        if self._entries == "pending":
            try:
                self._entries = ManifestEntries(self.slot + "/manifest.json")
            except OSError:
                self._entries = False
        if isinstance(self._entries, ManifestEntries):
            try:
                e = self._entries.next()
            except (ValueError, OSError):
                self._bad.append("~manifest.json")
                e = None
            if e is not None:
                rel = e[0]
                self._listed.add(rel)
                if self.loader:
                    for name, lrel in LOADER_FILES:
                        if rel == lrel:
                            self._loader.append((self.loader + "/" + name, "loader/" + name, e[1], e[2]))
                return (self.slot + "/" + rel, rel, e[1], e[2])
            self._entries.close()
            self._entries = False  # manifest done; loader files next
        if self._loader:
            return self._loader.pop()
        return None

    def step(self, budget_ms=30):
        # Advance the scan; True when a scan completed in this call.
        t0 = ticks_ms()
        done = False
        if self._entries is None:
            self.started = t0
            self._start()
            done = self._entries is None
        while not done and ticks_diff(ticks_ms(), t0) < budget_ms:
            if self._cur is None:
                self._cur = self._next()
                if self._cur is None:
                    if self._walk_one():
                        continue
                    self._finish()
                    done = True
                    break
            self._hash_some(t0, budget_ms)
        d = ticks_diff(ticks_ms(), t0)
        if d > self.max_step_ms:
            self.max_step_ms = d
        return done

    def _hash_some(self, t0, budget_ms):
        path, rel, want, size = self._cur
        if self._f is None:
            try:
                self._f = open(path, "rb")
            except OSError:
                self._cur = None
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
                self._cur = None
                if size is not None:  # the manifest itself is not counted
                    self._files += 1
                if (size is not None and self._n != size) or self._h.digest() != want:
                    self._bad.append("~" + rel)
                return
            self._h.update(mv[:n])
            self._n += n
