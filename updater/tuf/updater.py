# TUF client orchestrator (like python-tuf's ngclient.Updater): fetches
# metadata and targets, feeds bytes to the pure TrustedSet, and stores what
# it accepted. Spec v1.0.x section 5 ("detailed client workflow").
#
# Files in the metadata directory (unversioned names, each written
# atomically: stream to "<name>.tmp", then rename):
#   root.json, timestamp.json, snapshot.json, targets.json, <role>.json
# where <role> is the url-quoted delegated role name (a role name with "/"
# cannot escape the directory).
#
# Heap (256 KiB MicroPython heap): a metadata file is streamed to a temp
# file, hashed from the file in 1 KiB pieces, parsed with json.load straight
# from the file, and its canonical JSON is streamed into the signature
# verifiers: neither the raw nor the canonical bytes are ever held whole.
# What stays is the parsed document, about 2.2x the size of an indented
# python-tuf file on MicroPython; gc.collect() runs between roles. Hence the
# size caps in UpdaterConfig: a repository with more targets than fit in one
# file should use delegations (hash bins), each bin a separate small file.
import gc
import os

from board.compat import IS_MICROPYTHON, path_exists
from updater.tuf import envelope, metadata as md
from updater.tuf.envelope import EnvelopeType  # noqa: F401 (ngclient-like API)
from updater.tuf.errors import (
    DownloadHTTPError,
    EqualVersionNumberError,
    RepositoryError,
    RoleNotFoundError,
)
from updater.tuf.fetcher import Fetcher, TargetStream
from updater.tuf.patterns import may_match_prefix, quote, slash
from updater.tuf.trusted_set import TrustedSet


class UpdaterConfig:
    """Limits of the client, in one place.

    The defaults differ from python-tuf's (root 512000, timestamp 16384,
    snapshot 2000000, targets 5000000 bytes) because metadata is parsed in
    RAM on a 256 KiB heap. Measured on the VM (256 KiB heap, client code
    compiled from source, ~90 KiB resident): a parsed file takes ~2.2x its
    (indented, python-tuf default) size; the largest single targets file
    that fits is ~50 KB. With these caps a snapshot at 16 KiB plus a targets
    file at 32 KiB refresh at 256 KiB (tests/e2e/test_tuf_heap.py). During a
    target lookup the chain of delegated roles walked stays loaded (it is
    dropped afterwards): keep delegated roles small (hash bins).
    On a board with the client frozen into flash, ~90 KiB more is free.
    DSSE envelopes (envelope_type SIMPLE) are read into one buffer of the
    file's size and the payload is decoded from base64 in place
    (dsse.py); measured at 256 KiB, a 34.5 KB DSSE targets file (26 KB
    payload) refreshes, a 43 KB one needs a larger heap."""

    def __init__(
        self,
        max_root_rotations=32,
        max_delegations=32,
        root_max_length=32768,
        timestamp_max_length=16384,
        snapshot_max_length=16384,
        targets_max_length=32768,
        prefix_targets_with_hash=True,
        envelope_type=envelope.ENVELOPE_METADATA,
    ):
        self.max_root_rotations = max_root_rotations
        self.max_delegations = max_delegations
        self.root_max_length = root_max_length
        self.timestamp_max_length = timestamp_max_length
        self.snapshot_max_length = snapshot_max_length
        self.targets_max_length = targets_max_length
        self.prefix_targets_with_hash = prefix_targets_with_hash
        # envelope.ENVELOPE_METADATA (traditional TUF JSON, default) or
        # envelope.ENVELOPE_SIMPLE (DSSE), like ngclient's envelope_type. The caps
        # above apply to the raw file, so a DSSE file (base64 payload, ~4/3
        # of the JSON) carries a smaller document under the same cap.
        if envelope_type not in envelope.ENVELOPE_TYPES:
            raise ValueError("unknown envelope type %r" % envelope_type)
        self.envelope_type = envelope_type


def current_time():
    """Seconds since 1970-01-01 UTC from the system clock (libfaketime
    reaches it on the unix VM). Bare-metal MicroPython counts from 2000."""
    import time

    t = int(time.time())
    if IS_MICROPYTHON and time.gmtime(0)[0] == 2000:
        t += 946684800
    return t


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


class _FileSink:
    # Writes a download to an open file (or any sink) and feeds an optional HashCheck.
    def __init__(self, f, check=None):
        self.f = f
        self.check = check

    def write(self, mv):
        if self.check is not None:
            self.check.update(mv)
        self.f.write(mv)


class Updater:
    """metadata_dir must hold a trusted root.json (see `init` in
    client_main.py). `now`: reference time (seconds since 1970) for expiry,
    default the system clock at construction. `log`: callable taking one
    progress string (default: silent)."""

    def __init__(
        self,
        metadata_dir,
        metadata_base_url,
        target_dir=None,
        target_base_url=None,
        fetcher=None,
        config=None,
        now=None,
        log=None,
    ):
        self._dir = metadata_dir.rstrip("/") or "/"
        self._meta_url = slash(metadata_base_url)
        self.target_dir = target_dir
        self._target_url = slash(target_base_url) if target_base_url else None
        self.config = config or UpdaterConfig()
        self.fetcher = fetcher or Fetcher()
        self.log = log or (lambda msg: None)
        self.now = current_time() if now is None else now
        with self._open_local(md.ROOT) as f:  # OSError if missing
            self._trusted = TrustedSet(f, self.now, self.config.envelope_type)
        gc.collect()

    # ------------------------------------------------------------ access
    @property
    def trusted(self):
        return self._trusted

    def trusted_versions(self):
        """{role: version} of the trusted top-level metadata loaded so far."""
        out = {}
        for r in md.TOP_LEVEL_ROLES:
            s = self._trusted.get(r)
            if s is not None:
                out[r] = s.version
        return out

    # ------------------------------------------------------------ storage
    def _path(self, role):
        return "%s/%s.json" % (self._dir, quote(role))

    def _open_local(self, role):
        return open(self._path(role), "rb")

    def _download_metadata(self, role, max_length, version=None):
        """Stream <version.>role.json into a temp file and return its path.
        The caller verifies it (parsing straight from the file) and renames
        it over the trusted copy on acceptance."""
        name = quote(role) + ".json"
        if version is not None:
            name = "%d.%s" % (version, name)
        url = self._meta_url + name
        tmp = self._path(role) + ".tmp"
        try:
            with open(tmp, "wb") as f:
                self.fetcher.fetch(url, _FileSink(f), max_length)
        except BaseException:
            _remove(tmp)
            raise
        return tmp

    def _accept(self, role, tmp):
        # Persist verified metadata: the temp file holds exactly the bytes
        # that were verified; rename is atomic (POSIX, littlefs).
        os.rename(tmp, self._path(role))

    def _verify_tmp(self, tmp, fn):
        # Run `fn(file)` (a TrustedSet update) on the downloaded temp file;
        # the temp file is removed when verification fails.
        try:
            with open(tmp, "rb") as f:
                return fn(f)
        except BaseException:
            _remove(tmp)
            raise

    def _verify_download(self, role, fn, max_length, version=None):
        # Download, verify, persist on success.
        tmp = self._download_metadata(role, max_length, version)
        result = self._verify_tmp(tmp, fn)
        self._accept(role, tmp)
        gc.collect()
        return result

    # ------------------------------------------------------------ workflow
    def refresh(self):
        """Top-level workflow: root (loop), timestamp, snapshot, targets.
        Raises RepositoryError / DownloadError / OSError. Like python-tuf's
        Updater, one refresh per instance (make a new Updater to refresh
        again; get_targetinfo() refreshes first if needed)."""
        start_root = self._trusted.root
        try:
            self._load_root()
        finally:
            # also when a later root in the chain failed: the roots already
            # accepted (and stored) may have rotated the keys
            self._fast_forward_recovery(start_root)
            start_root = None
        self._load_timestamp()
        self._load_snapshot()
        self._load_targets(md.TARGETS, md.ROOT)

    def _load_root(self):
        # 5.3: fetch N+1.root.json until the repository has none (403/404),
        # at most max_root_rotations times.
        cfg = self.config
        first = self._trusted.root.version + 1
        for version in range(first, first + cfg.max_root_rotations):
            try:
                tmp = self._download_metadata(md.ROOT, cfg.root_max_length, version)
            except DownloadHTTPError as e:
                if e.status in (403, 404):
                    break
                raise
            self._verify_tmp(tmp, self._trusted.update_root)
            self._accept(md.ROOT, tmp)
            self.log("root: updated to v%d" % version)
            gc.collect()
        self.log("root: trusted v%d" % self._trusted.root.version)

    def _fast_forward_recovery(self, start_root):
        # 5.3.11: if the timestamp and/or snapshot keys were rotated, delete
        # the trusted timestamp and snapshot so that a version number that
        # an attacker pushed up with the old (compromised) keys no longer
        # blocks legitimate metadata. python-tuf gets the same effect
        # implicitly (the stored files no longer verify).
        new = self._trusted.root
        if new is start_root:
            return
        rotated = []
        for r in (md.TIMESTAMP, md.SNAPSHOT):
            if not new.roles[r].same_as(start_root.roles[r]):
                rotated.append(r)
        if rotated:
            self.log("root: %s keys rotated, discarding trusted timestamp and snapshot" % "+".join(rotated))
            _remove(self._path(md.TIMESTAMP))
            _remove(self._path(md.SNAPSHOT))

    def _load_timestamp(self):
        # Local timestamp first (rollback protection), then the remote one.
        try:
            with self._open_local(md.TIMESTAMP) as f:
                self._trusted.update_timestamp(f)
        except (OSError, RepositoryError):
            pass
        gc.collect()
        tmp = self._download_metadata(md.TIMESTAMP, self.config.timestamp_max_length)
        try:
            self._verify_tmp(tmp, self._trusted.update_timestamp)
        except EqualVersionNumberError:
            self.log("timestamp: v%d (unchanged)" % self._trusted.timestamp.version)
            return
        self._accept(md.TIMESTAMP, tmp)
        gc.collect()
        self.log("timestamp: v%d" % self._trusted.timestamp.version)

    def _load_snapshot(self):
        try:
            with self._open_local(md.SNAPSHOT) as f:
                self._trusted.update_snapshot(f, True)
            self.log("snapshot: v%d (stored copy still current)" % self._trusted.snapshot.version)
            return
        except (OSError, RepositoryError):
            pass
        gc.collect()
        meta = self._trusted.timestamp.snapshot_meta
        length = meta.length or self.config.snapshot_max_length
        version = meta.version if self._trusted.root.consistent_snapshot else None
        self._verify_download(md.SNAPSHOT, self._trusted.update_snapshot, length, version)
        self.log("snapshot: v%d" % self._trusted.snapshot.version)

    def _load_targets(self, role, parent):
        # A role counts as loaded only if it was verified against this very
        # delegator; otherwise it is verified (again) against it.
        if self._trusted.contains(role, parent):
            return self._trusted.get(role)
        try:
            with self._open_local(role) as f:
                t = self._trusted.update_delegated_targets(f, role, parent)
            self.log("%s: v%d (stored copy still current)" % (role, t.version))
            return t
        except (OSError, RepositoryError):
            pass
        gc.collect()
        meta = self._trusted.snapshot.get_meta(role + ".json")
        if meta is None:
            raise RoleNotFoundError("role %s was delegated but is not in snapshot" % role)
        length = meta.length or self.config.targets_max_length
        version = meta.version if self._trusted.root.consistent_snapshot else None

        def update(data):
            return self._trusted.update_delegated_targets(data, role, parent)

        t = self._verify_download(role, update, length, version)
        self.log("%s: v%d" % (role, t.version))
        return t

    # ------------------------------------------------------------ targets
    def get_targetinfo(self, target_path):
        """TargetFile for `target_path` from the most trusted role that lists
        it (5.6.7 pre-order depth-first walk), or None."""
        if self._trusted.targets is None:
            self.refresh()
        try:
            return self._walk(target_path)
        finally:
            self._trusted.forget_delegated()

    def _walk(self, target_path):
        to_visit = [(md.TARGETS, md.ROOT)]
        visited = set()
        while len(visited) <= self.config.max_delegations and to_visit:
            role, parent = to_visit.pop()
            if role in visited:
                continue
            t = self._load_targets(role, parent)
            info = t.get_target(target_path)
            if info is not None:
                self.log("target %s: found in %s" % (target_path, role))
                return info
            visited.add(role)
            if t.delegations is not None:
                children = []
                for child, terminating in t.delegations.roles_for_target(target_path):
                    children.append((child, role))
                    if terminating:
                        to_visit = []  # 5.6.7.2.1: no backtracking
                        break
                children.reverse()
                to_visit.extend(children)
        if to_visit:
            self.log("target %s: gave up after %d roles" % (target_path, self.config.max_delegations))
        return None

    def list_targets(self, prefix=""):
        """Sorted target paths starting with `prefix` listed by top-level
        targets or by delegated roles reachable from it that may hold such
        paths (roles whose `paths` patterns cannot produce the prefix are
        skipped; hash-bin roles are visited). At most max_delegations roles
        are visited. A listed path is only a candidate: its authoritative
        TargetFile comes from get_targetinfo(path), which applies the
        delegation rules (order, terminating, paths) to that exact path."""
        if self._trusted.targets is None:
            self.refresh()
        found = set()
        try:
            to_visit = [(md.TARGETS, md.ROOT)]
            visited = set()
            while to_visit and len(visited) < self.config.max_delegations + 1:
                role, parent = to_visit.pop()
                if role in visited:
                    continue
                visited.add(role)
                t = self._load_targets(role, parent)
                for path in t.targets:
                    if path.startswith(prefix):
                        found.add(path)
                d = t.delegations
                if d is None:
                    continue
                children = []
                if d.roles is not None:
                    for r in d.roles:
                        if r.paths is None or may_match_prefix(r.paths, prefix):
                            children.append((r.name, role))
                else:
                    n = 1 << d.succinct.bit_length
                    for i in range(min(n, self.config.max_delegations)):
                        s = "%x" % i
                        children.append(("%s-%s" % (d.succinct.name_prefix, "0" * (d.succinct.suffix_len - len(s)) + s), role))
                children.reverse()
                to_visit.extend(children)
        finally:
            self._trusted.forget_delegated()
        out = list(found)
        out.sort()
        return out

    def _target_file_path(self, info):
        if self.target_dir is None:
            raise ValueError("target_dir is not set")
        return "%s/%s" % (self.target_dir.rstrip("/"), quote(info.path))

    def find_cached_target(self, info, filepath=None):
        """Local path if the file there already has the right length and
        hashes, else None."""
        if filepath is None:
            filepath = self._target_file_path(info)
        try:
            check = info.hash_check()
            buf = bytearray(2048)
            mv = memoryview(buf)
            with open(filepath, "rb") as f:
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    check.update(mv[:n])
            check.finish()
            return filepath
        except (OSError, RepositoryError):
            return None

    def target_url(self, info, target_base_url=None):
        base = slash(target_base_url) if target_base_url else self._target_url
        if base is None:
            raise ValueError("target_base_url is not set")
        path = info.path
        if self._trusted.root.consistent_snapshot and self.config.prefix_targets_with_hash:
            d, sep, b = path.rpartition("/")
            path = "%s%s%s.%s" % (d, sep, info.first_hash(), b)
        # The path comes from signed (possibly delegated) metadata and may
        # hold anything a `paths` pattern allows: CR/LF (header injection),
        # spaces (a broken request line), '?', '#', '%'. Percent-encode all
        # but '/' and the unreserved characters, so the mirror serves
        # exactly the file the path names.
        return base + quote(path, b"/")

    def target_stream(self, info, target_base_url=None):
        """A TargetStream (updater/tuf/fetcher.py) for this target: its bytes
        from any offset, at most info.length, through this Updater's fetcher.
        It holds no metadata, so the caller may drop the Updater and stream
        later (an installer checks the bytes against what they promise)."""
        return TargetStream(self.fetcher, self.target_url(info, target_base_url), info.length)

    def stream_target(self, info, sink, target_base_url=None):
        """Stream the whole target into sink.write(memoryview), checking its
        length (while streaming) and every supported hash. Raises
        LengthOrHashMismatchError at the end when the bytes differ: the sink
        must not trust what it got before this returns."""
        check = info.hash_check()
        self.target_stream(info, target_base_url).stream(0, _FileSink(sink, check))
        check.finish()

    def download_target(self, info, filepath=None, target_base_url=None, resume=False):
        """Stream the target into `filepath` (default: target_dir/<quoted
        path>) through "<filepath>.part", checking length (while streaming:
        at most info.length bytes are accepted) and every supported hash;
        the file appears under its final name only when it verified.
        resume=True continues an existing .part file with an HTTP Range
        request (the kept prefix is re-hashed first)."""
        if filepath is None:
            filepath = self._target_file_path(info)
        url = self.target_url(info, target_base_url)
        part = filepath + ".part"
        check = info.hash_check()
        offset = 0
        if resume and path_exists(part):
            buf = bytearray(2048)
            mv = memoryview(buf)
            try:
                with open(part, "rb") as f:
                    while True:
                        n = f.readinto(buf)
                        if not n:
                            break
                        check.update(mv[:n])  # raises if the prefix is too long
                        offset += n
            except RepositoryError:
                # longer than the target: discard it, or every later resume
                # would fail the same way
                _remove(part)
                raise
            buf = mv = None
        try:
            # A kept prefix that already has every byte (cut between the
            # last write and the rename) is checked as it is: a Range
            # request from its end would only get 416, on every retry.
            if offset == 0 or offset < info.length:
                with open(part, "ab" if offset else "wb") as f:
                    self.fetcher.fetch(url, _FileSink(f, check), info.length, offset)
            check.finish()
        except RepositoryError:
            _remove(part)
            raise
        except BaseException:
            if not resume:
                _remove(part)
            raise
        os.rename(part, filepath)
        self.log("target %s: %d bytes verified -> %s" % (info.path, info.length, filepath))
        return filepath
