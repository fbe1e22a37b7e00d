# The installer: verified package -> inactive slot -> trial boot -> confirm.
#
# install(): streams the package into the inactive slot. The manifest is
#   checked against the TUF-signed manifest_sha256 before it is believed; every
#   file is inflated (or copied from the active slot when unchanged) through
#   file.tmp + rename and checked against the manifest's sha256; a final pass
#   re-verifies the whole slot; slot.json is written last. Progress is kept in
#   a journal (/state/install.json) so that after a power cut or a broken link
#   the install resumes at the file (and byte) where it stopped.
# activate(): records a trial of the new slot in the boot state (atomic).
# confirm(): on the trial boot, after the health check: the new slot becomes
#   active and the security counter floor rises to its counter.
# Nothing here decides WHEN: the clinical gate (gate.py) and the agent do.
import gc
import os
import json
import hashlib
import binascii

from board.compat import write_atomic
from updater import bootstate
from updater.install import manifest as pkgman
from updater.install import slot as slotops
from updater.install import policy
from updater.install.errors import PolicyError, SlotError, TransferError
from updater.install.source import Enough

JOURNAL = "install.json"
MANIFEST_PART = "install-manifest.part"  # the manifest being checked, next to the journal
FLUSH_EVERY = 16 * 1024  # blob bytes between littlefs syncs (resume granularity)


class _HeaderSink:
    # The header into a buffer allocated once at its exact size; the manifest
    # (up to MAX_MANIFEST = 24 KiB) streamed to a file on flash with its
    # sha256 computed on the way, then the stream stops. After a TUF check
    # the heap may hold 100 KB free but no 10 KB in one piece: nothing here
    # needs more than the header and one chunk at a time.
    def __init__(self, path):
        self.head = bytearray(pkgman.HEADER_SIZE)
        self.nhead = 0
        self.path = path
        self.f = None
        self.sha = None
        self.nman = 0
        self.mlen = None
        self.mhash = None

    def complete(self):
        return self.mlen is not None and self.nman == self.mlen

    def write(self, mv):
        if self.f is None:
            take = min(len(mv), pkgman.HEADER_SIZE - self.nhead)
            self.head[self.nhead:self.nhead + take] = mv[:take]
            self.nhead += take
            mv = mv[take:]
            if self.nhead < pkgman.HEADER_SIZE:
                return
            self.mlen, self.mhash = pkgman.parse_header(self.head)
            self.f = open(self.path, "wb")
            self.sha = hashlib.sha256()
        take = min(len(mv), self.mlen - self.nman)
        if take:
            self.f.write(mv[:take])
            self.sha.update(mv[:take])
            self.nman += take
        if self.nman == self.mlen:
            raise Enough()

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None


class _RunSink:
    # Receives the blobs of consecutive entries, inflating each when complete.
    def __init__(self, inst, entries, first_have):
        self.inst = inst
        self.entries = entries  # [(index, entry)]
        self.k = 0
        self.have = first_have  # blob bytes already on flash for entries[0]
        self.f = None
        self.since_flush = 0

    def _open(self):
        self.f = open(self.inst.blob_path, "ab" if self.have else "wb")

    def write(self, mv):
        while len(mv):
            if self.k >= len(self.entries):
                raise Enough()
            idx, e = self.entries[self.k]
            if self.f is None:
                self._open()
            want = e["csize"] - self.have
            n = len(mv) if len(mv) < want else want
            self.f.write(mv[:n])
            self.have += n
            self.since_flush += n
            mv = mv[n:]
            if self.since_flush >= FLUSH_EVERY:
                self.f.flush()
                self.since_flush = 0
            if self.have == e["csize"]:
                self.f.close()
                self.f = None
                self.inst._inflate_entry(idx, e)
                self.k += 1
                self.have = 0
                self.since_flush = 0
                if self.k >= len(self.entries):
                    raise Enough()
        self.inst._tick()

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None


class Installer:
    def __init__(self, mounts, model, progress=None, buf_size=1024):
        self.mounts = mounts
        self.state_dir = mounts["state"]
        self.model = model
        self.progress = progress
        self.buf = bytearray(buf_size)
        self.journal_path = self.state_dir + "/" + JOURNAL
        self.j = None
        self.manifest = None
        self.slot_path = None
        self.blob_path = None

    # -- state -------------------------------------------------------------------
    def boot_state(self):
        return bootstate.read_state(self.state_dir)

    def running(self):
        # (slot, slot.json info) of the confirmed slot.
        st = self.boot_state()
        slot = st["active"]
        info = bootstate.slot_info(self.mounts["slot_" + slot]) or {}
        return slot, info

    def running_version(self):
        return self.running()[1].get("version", "0.0.0")

    def read_journal(self):
        try:
            with open(self.journal_path) as f:
                j = json.loads(f.read())
            return j if isinstance(j, dict) else None
        except (OSError, ValueError):
            return None

    def _save_journal(self):
        write_atomic(self.journal_path, json.dumps(self.j))

    def _drop_journal(self):
        slotops.remove(self.journal_path)

    def reconcile(self):
        # A power cut between activation (boot state written) and dropping
        # the journal leaves a journal for a slot that is already on trial or
        # active: it is finished business.
        j = self.read_journal()
        if j is None:
            return None
        st = self.boot_state()
        trial = st.get("trial")
        activated = False
        for ev in st.get("events", []):
            if ev.get("type") == "activated" and ev.get("manifest_sha256") == j.get("manifest_sha256"):
                activated = True
        if (j.get("slot") == st["active"] or (trial and trial.get("slot") == j.get("slot"))
                or activated or j.get("manifest_sha256") in st.get("failed", [])):
            self._drop_journal()
            return None
        return j

    def _report(self, step, **kw):
        if self.progress:
            kw["step"] = step
            self.progress(kw)

    def _tick(self):
        if self.progress:
            self.progress(None)

    # -- install -------------------------------------------------------------------
    def install(self, source, target, manifest_sha256, urgent=False):
        """Install target (a TUF target path) from source into the inactive
        slot. Returns the manifest. Raises InstallError subclasses for bad data
        or refusals, DownloadError for transport failures (then resumable)."""
        try:
            return self._install(source, target, manifest_sha256, urgent)
        finally:
            # The parsed manifest (one entry per file, up to MAX_FILES) is
            # needed only while installing: a failed, paused or finished
            # install must not keep ~20 KB of it between checks.
            self.manifest = None

    def _install(self, source, target, manifest_sha256, urgent):
        st = self.boot_state()
        if st.get("trial"):
            raise PolicyError("a trial boot is pending; confirm or roll back first")
        if manifest_sha256 in (st.get("failed") or []):
            raise PolicyError("this package rolled back on this device before")
        active = st["active"]
        inactive = bootstate.other(active)
        self.slot_path = self.mounts["slot_" + inactive]
        self.blob_path = self.slot_path + "/" + slotops.BLOB
        j = self.reconcile()
        resume = (
            j is not None and j.get("target") == target and j.get("manifest_sha256") == manifest_sha256
            and j.get("slot") == inactive and j.get("phase") in ("installing", "installed")
        )

        # Read and check the manifest BEFORE touching flash: a package that is
        # refused (bad manifest, policy, too big for the slot) or a link that
        # breaks here must cost neither the inactive slot's contents nor the
        # journal of an install waiting for activation.
        gc.collect()
        part = self.state_dir + "/" + MANIFEST_PART
        hs = _HeaderSink(part)
        try:
            source.stream(0, hs)
        finally:
            hs.close()
        if not hs.complete():
            raise TransferError("package ends inside its header or manifest")
        mlen = hs.mlen
        digest = hs.sha.digest()
        header_hash = hs.mhash
        hs = None
        with open(part, "rb") as f:
            m = pkgman.load_manifest(f, digest, header_hash, manifest_sha256)
        why = policy.refusal(policy.from_manifest(m), self.model, self.running_version(), st.get("floor", 0))
        if why:
            raise PolicyError(why)
        slotops.check_capacity(self.slot_path, m)

        if not resume:
            self.j = {"target": target, "manifest_sha256": manifest_sha256, "slot": inactive,
                      "phase": "installing", "done": 0, "urgent": bool(urgent)}
            self._save_journal()
        else:
            self.j = j
        self.manifest = m
        self.j["version"] = m["version"]
        self.j["counter"] = m["security_counter"]
        data_off = pkgman.HEADER_SIZE + mlen
        if self.j["phase"] == "installing":
            self._report("downloading", version=m["version"], done=self.j["done"], files=len(m["files"]))
            try:
                if self.j["done"] == 0 and not self.j.get("cleared"):
                    slotops.clear(self.slot_path)
                    # The signed manifest goes into the slot now (copied from
                    # where it was checked, and read back; slot.json, written
                    # last, is what makes a slot bootable).
                    if not slotops.copy_verified(part, self.slot_path + "/" + slotops.SLOT_MANIFEST,
                                                 {"sha256": binascii.hexlify(digest).decode(), "size": mlen}, self.buf):
                        raise TransferError("the manifest read back from flash is not the one checked")
                    # Persisted with the next journal write (before any byte
                    # of a file lands): a cut before it just clears again, and
                    # a resume inside the first file keeps what it has.
                    self.j["cleared"] = True
                slotops.remove(part)
                gc.collect()
                self._fill_slot(source, data_off, active)
                self._verify_slot(m, manifest_sha256, mlen)
                info = {"version": m["version"], "security_counter": m["security_counter"],
                        "model": m["model"], "manifest_sha256": manifest_sha256, "target": target}
                if m.get("entry"):
                    info["entry"] = m["entry"]  # what the loader starts
                write_atomic(self.slot_path + "/" + slotops.SLOT_INFO, json.dumps(info))
            except OSError as e:
                # A full slot is a refusal (the same package fails the same
                # way), not a broken link to retry.
                if slotops.is_full(e):
                    raise SlotError("the slot is full: %s %s does not fit" % (m["model"], m["version"]))
                raise
            self.j["phase"] = "installed"
            self._save_journal()
        self._report("installed", version=m["version"], slot=inactive)
        return m

    def _verify_slot(self, m, manifest_sha256, mlen):
        # The last pass over the whole slot, its manifest.json included. A file
        # that no longer verifies (flash trouble after it was written) must
        # not fail every retry at this same point: the next attempt starts the
        # slot over (TransferError: retried, the release is not at fault).
        try:
            slotops.verify(self.slot_path, m, self.buf)
            got = slotops.hash_file(self.slot_path + "/" + slotops.SLOT_MANIFEST, self.buf)
            if got != (manifest_sha256, mlen):
                raise SlotError("manifest.json in the new slot does not verify")
        except SlotError as e:
            self.j["done"] = 0
            self.j["cleared"] = False
            self.j["blob_for"] = None
            self._save_journal()
            raise TransferError(str(e))

    def _fill_slot(self, source, data_off, active):
        m = self.manifest
        files = m["files"]
        active_path = self.mounts["slot_" + active]
        self._same = -1
        i = self.j["done"]
        while i < len(files):
            e = files[i]
            dst = self.slot_path + "/" + e["path"]
            if self._unchanged(active_path, i, e):
                slotops.makedirs_for(self.slot_path, e["path"])
                if slotops.copy_verified(active_path + "/" + e["path"], dst, e, self.buf):
                    self._done(i + 1)
                    i += 1
                    continue
            if not e.get("stored"):
                raise SlotError("%s is not in this patch and the running slot's copy does not match" % e["path"])
            # A run of consecutive files to download (their blobs are contiguous).
            run = []
            k = i
            while k < len(files) and files[k].get("stored"):
                ek = files[k]
                if k > i and self._unchanged(active_path, k, ek):
                    break
                run.append((k, ek))
                k += 1
            have = 0
            if slotops.exists(self.blob_path) and self.j.get("blob_for") == i:
                have = os.stat(self.blob_path)[6]
                if have > e["csize"]:
                    have = 0
            else:
                slotops.remove(self.blob_path)
            self.j["blob_for"] = i
            self._save_journal()
            sink = _RunSink(self, run, have)
            try:
                source.stream(data_off + e["offset"] + have, sink)
            finally:
                sink.close()
            if sink.k < len(run):
                raise TransferError("package ends before %s is complete" % run[sink.k][1]["path"])
            i = k

    def _unchanged(self, active_path, idx, e):
        # Does the running slot hold this exact file? Checked on the file
        # itself (size, then sha256 streamed through self.buf) rather than
        # by parsing the running slot's manifest next to the new one: that
        # doubled the RAM an update needs. copy_verified checks it again.
        if idx == self._same:
            return True
        src = active_path + "/" + e["path"]
        try:
            if os.stat(src)[6] != e["size"]:
                return False
        except OSError:
            return False
        if slotops.hash_file(src, self.buf) == (e["sha256"], e["size"]):
            self._same = idx  # looked ahead: do not hash it twice
            return True
        return False

    def _inflate_entry(self, idx, e):
        slotops.makedirs_for(self.slot_path, e["path"])
        try:
            slotops.inflate_verified(self.blob_path, self.slot_path + "/" + e["path"], e, self.buf, pkgman.WBITS)
        except TransferError:
            # Wrong bytes (a broken mirror, a server answering a Range request
            # from the wrong offset) must not be resumed from: without the
            # blob, the next attempt fetches this file again.
            slotops.remove(self.blob_path)
            raise
        slotops.remove(self.blob_path)
        self.j["blob_for"] = idx + 1
        self._done(idx + 1)

    def _done(self, n):
        self.j["done"] = n
        self._save_journal()
        self._report("downloading", version=self.manifest["version"], done=n, files=len(self.manifest["files"]))

    # -- activate / confirm ------------------------------------------------------------
    def installed(self):
        # The journal of a completed install waiting for activation, or None.
        j = self.reconcile()
        if j and j.get("phase") == "installed":
            if self._record_matches(j):
                return j
            # The slot changed after the install (flash trouble, tampering):
            # nothing to activate; the next check installs again.
            self.abandon(j)
        return None

    def _record_matches(self, j):
        info = bootstate.slot_info(self.mounts["slot_" + j["slot"]])
        return bool(info) and info.get("manifest_sha256") == j.get("manifest_sha256") and \
            info.get("security_counter") == j.get("counter") and info.get("version") == j.get("version")

    def abandon(self, j):
        # Forget a completed install (journal j) that must not be activated:
        # it can no longer be trusted, or its release was recalled while it
        # waited. The slot stops looking complete and the journal goes.
        slotops.remove(self.mounts["slot_" + j["slot"]] + "/" + slotops.SLOT_INFO)
        self._drop_journal()

    def activate(self, now, deadline_s=300, max_attempts=3):
        j = self.installed()
        if j is None:
            raise SlotError("nothing installed to activate")
        st = self.boot_state()
        if st.get("trial"):
            raise PolicyError("a trial is already pending")
        # slot.json and manifest.json must still be what the install wrote:
        # the trial's version and counter (the floor after confirmation) come
        # from the verified manifest, never from a file that may have changed.
        path = self.mounts["slot_" + j["slot"]]
        if slotops.hash_file(path + "/" + slotops.SLOT_MANIFEST, self.buf)[0] != j["manifest_sha256"]:
            self.abandon(j)
            raise SlotError("the installed slot does not match the journal")
        st["trial"] = {"slot": j["slot"], "attempts": 0, "max_attempts": max_attempts,
                       "deadline": int(now + deadline_s), "version": j["version"],
                       "counter": j["counter"], "manifest_sha256": j["manifest_sha256"]}
        bootstate.add_event(st, {"type": "activated", "slot": j["slot"], "version": j["version"],
                              "manifest_sha256": j["manifest_sha256"], "time": int(now)})
        bootstate.write_state(self.state_dir, st)
        self._drop_journal()
        return st["trial"]

    def confirm(self, now):
        # On the trial boot, once healthy. Returns the confirmed version or None.
        st = self.boot_state()
        trial = st.get("trial")
        if not trial:
            return None
        st["active"] = trial["slot"]
        if trial.get("counter", 0) > st.get("floor", 0):
            st["floor"] = trial["counter"]
        st["trial"] = None
        bootstate.add_event(st, {"type": "confirmed", "slot": trial["slot"], "version": trial.get("version"),
                              "time": int(now)})
        bootstate.write_state(self.state_dir, st)
        self.reconcile()
        return trial.get("version")

