# The cold half of the security monitor (agent/security/monitor.py), loaded
# only while used and released after (heap): the once-per-boot work, the
# posture report (issue 12 section 1: fields gathered from the board, the
# agent and the optional modules other parts of the agent own) and the
# code-integrity scan (Scanner, below). Field choices against AWS Device
# Defender / the Defender micro agent: SEALING.md section 8.
import binascii
import gc
import hashlib
import json
import os

from board.compat import ticks_ms, ticks_diff
from agent.security import events

MAX_ENDPOINTS = 4


def tls_reason(text, words, n=48):
    # The part of an error's text that names the TLS fault: n characters from a
    # little before its first TLS word (`words`: monitor.TLS_WORDS; the
    # wrappers in front, e.g. MQTTTransportError("write failed: ValueError('...,
    # say nothing), escaped newlines as spaces; None when no TLS word is in it.
    t = text.lower()
    at = -1
    for w in words:
        i = t.find(w)
        if i >= 0 and (at < 0 or i < at):
            at = i
    if at < 0:
        return None
    # from 4 characters before the word ("The " of "The certificate is not..."),
    # once the escaped newlines in front of it are spaces
    part = text[max(0, at - 8):at + n + 8].replace("\\\\n", " ").replace("\\n", " ")
    at = max(0, part.lower().find(t[at:at + 4]) - 4)
    return part[at:at + n].strip()


def scan_step(mon, t):
    # One step of the integrity scan (a new scan when none runs).
    if mon.scanner is None:
        m = mon.board.mounts()
        mon.scan_started = t
        # The scan's read buffer lives as long as the scan (not on the
        # resident monitor between scans).
        mon.scanner = Scanner(m["slot_" + mon.slot], m.get("loader"), bytearray(SCAN_BUF))
    sc = mon.scanner
    done = sc.step(mon.cfg["budget_ms"])
    if sc.max_step_ms > mon.stats["scan_max_ms"]:
        mon.stats["scan_max_ms"] = sc.max_step_ms
    if not done:
        return
    mon.scanner = None
    r = mon.scan = sc.result
    bad = tuple(r["bad"])
    if bad and bad != mon.ps.get("bad"):
        mon.stats["integrity_violations"] += 1
        events.emit("integrity_violation", "critical", {"files": r["nbad"], "first": bad[0]})
    mon.ps["bad"] = bad


def report(mon, now, gap):
    # Build the posture report and send it, unless (gap: ms since the last
    # one) nothing stable changed within the period. -> the report or None.
    p = build(mon, now)
    key = p.pop("key")
    ps = mon.ps
    ps["scan"] = mon.scan  # this scan's result is looked at once
    if gap is not None and key == ps.get("key") and gap < mon.cfg["period_s"] * 1000:
        return None
    gc.collect()
    if mon.tel is not None and mon.tel.sender.enqueue_status("posture", extra=p) is not None:
        mon.stats["posture_sent"] += 1
    ps["key"] = key
    ps["at"] = ticks_ms()
    return p


def _days_from_civil(y, m, d):
    # Days since 1970-01-01 of a Gregorian date (H. Hinnant's algorithm).
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _der(buf, i):
    # -> (tag, content start, content end) of the DER element at i
    tag = buf[i]
    ln = buf[i + 1]
    i += 2
    if ln & 0x80:
        k = ln & 0x7F
        ln = int.from_bytes(bytes(buf[i:i + k]), "big")
        i += k
    return tag, i, i + ln


def cert_not_after(der):
    # notAfter of an X.509 certificate (DER) as Unix seconds, or None.
    try:
        _, s, _ = _der(der, 0)  # Certificate
        _, i, _ = _der(der, s)  # tbsCertificate
        tag, a, b = _der(der, i)
        if tag == 0xA0:  # [0] version
            i = b
            tag, a, b = _der(der, i)
        # (a, b) is the serial; skip the signature algorithm and the issuer
        for _ in range(3):
            tag, a, b = _der(der, b)
        # (a, b) is now the validity sequence
        _, a, b = _der(der, a)  # notBefore
        tag, a, b = _der(der, b)  # notAfter
        txt = bytes(der[a:b]).decode()
        if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ
            y = int(txt[0:2])
            y += 2000 if y < 50 else 1900
            txt = txt[2:]
        else:  # GeneralizedTime YYYYMMDDHHMMSSZ
            y = int(txt[0:4])
            txt = txt[4:]
        days = _days_from_civil(y, int(txt[0:2]), int(txt[2:4]))
        return days * 86400 + int(txt[4:6]) * 3600 + int(txt[6:8]) * 60 + int(txt[8:10])
    except (IndexError, ValueError, TypeError, UnicodeError):
        return None


def file_digest(path):
    # First 8 bytes of the sha256 of a file, hex; None when absent.
    from updater.install.slot import hash_file

    h = hash_file(path, bytearray(512))[0]
    return None if h is None else h[:16]


def flash_free(path):
    try:
        st = os.statvfs(path)
        return st[0] * st[4]
    except (OSError, AttributeError):
        return None


def heap_free():
    return gc.mem_free() if hasattr(gc, "mem_free") else None


def egress():
    # {"host:port": [in, out, connections]} (at most MAX_ENDPOINTS, the busiest)
    # and the blocked count, from the network guard when the board has one.
    try:
        from board import netguard
    except ImportError:
        return None, None
    try:
        st = netguard.stats()
        eps = st.get("endpoints") or {}
        names = sorted(eps, key=lambda k: -(eps[k].get("bytes_in", 0) + eps[k].get("bytes_out", 0)))
        out = {}
        for k in names[:MAX_ENDPOINTS]:
            e = eps[k]
            out[k[:48]] = [e.get("bytes_in", 0), e.get("bytes_out", 0), e.get("connections", 0)]
        return out, st.get("blocked", 0)
    except (AttributeError, TypeError, ValueError, OSError):
        return None, None


def console(state_dir):
    # Failed console logins and lockout state, when the console module is there.
    # The console package is given back after reading unless a session had it
    # loaded (it stayed resident after every report: 3.3 KiB, bench/heap_security.py).
    import sys

    had = "agent.console" in sys.modules
    try:
        from agent.console import stats as cstats
    except ImportError:
        return None
    try:
        s = cstats.stats(state_dir)
        return {"failed": s.get("failed_logins", 0), "lockouts": s.get("lockouts", 0),
                "locked": len(s.get("locked_accounts") or [])}
    except (AttributeError, TypeError, ValueError, OSError):
        return None
    finally:
        cstats = None
        if not had:
            from agent import release_modules

            release_modules(("agent.console",))


def build(mon, now):
    # The posture report of a Monitor (agent/security/monitor.py), with its
    # "key" (stable_key) for change detection.
    u = mon.updates
    ps = mon.ps
    m = mon.board.mounts()
    if ps.get("cert_exp") is None and mon.tel is not None:
        ps["cert_exp"] = cert_not_after(mon.tel.ident.get("cert_der") or b"")
    p = {"version": u.version if u is not None else None, "slot": mon.slot, "boots": ps["boots"],
         "period_s": mon.cfg["period_s"], "reset": mon.board.reset_reason(), "integrity": mon.scan,
         "config": file_digest(m["state"] + "/config.json"), "cert_exp": ps.get("cert_exp"),
         "heap": [heap_free(), mon.stats["heap_low"]], "flash_free": flash_free(m["data"]),
         "ev": [mon.log.head_n, mon.log.head_h], "ev_dropped": events.stats["dropped"]}
    if u is not None:
        p["updates"] = "off" if getattr(u, "off", None) else "on"
    tuf = getattr(u, "tuf_info", None)
    if tuf:
        p["tuf"] = tuf
    if mon.tel is not None:
        q = mon.tel.sender.queue
        p["queue"] = [len(q), q.dropped]
    eps, blocked = egress()
    if eps is not None:
        p["egress"] = eps
        p["blocked"] = blocked
    con = console(m["state"])
    if con is not None:
        p["console"] = con
    if ps.get("check_ok") is not None:
        p["since_check_s"] = int(now - ps["check_ok"])
    p["quarantine"] = quarantined(m["state"])
    p["key"] = stable_key(p)
    return p


def stable_key(p):
    # The fields whose change triggers a posture report at once.
    i = p.get("integrity") or {}
    c = p.get("console") or {}
    return (p.get("version"), p.get("slot"), i.get("ok"), tuple(i.get("bad") or ()), p.get("config"),
            p.get("cert_exp"), str(p.get("tuf")), p.get("blocked"), c.get("lockouts"), c.get("locked"),
            p.get("quarantine"))


def quarantined(state_dir):
    # The signed quarantine command's flag as agent/security/flags.py reads
    # it (a corrupt flag file is reported there as an integrity violation).
    from agent.security import flags

    return bool(flags.load(state_dir).get("quarantine"))


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
CHUNK = 1024
SCAN_BUF = 512  # the integrity scan reads files through this, one per scan
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
    def __init__(self, slot_path, loader_path=None, buf=None):
        self.slot = slot_path
        self.loader = loader_path
        self.buf = buf if buf is not None else bytearray(CHUNK)
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
