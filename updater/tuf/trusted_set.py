# Trusted metadata set: the pure, bytes-in verification state of the TUF
# client workflow (spec v1.0.x section 5), modelled on python-tuf's
# ngclient TrustedMetadataSet. No I/O here: the orchestrator (updater.py)
# fetches and stores bytes; this class decides what is trusted.
#
# Metadata arguments (`data`) are bytes, or an open binary file positioned
# at 0: hashes are computed over it in pieces (then it is rewound) and it is
# parsed straight from the stream, so the raw file is never in RAM whole.
#
# Order of use: TrustedSet(root bytes, now[, envelope]) -> update_root()* ->
# update_timestamp() -> update_snapshot() -> update_targets() ->
# update_delegated_targets()*. Calling out of order is a programming error
# (RuntimeError), bad data is a RepositoryError.
#
# `now` is the reference time in seconds since 1970 (UTC), given by the
# caller so that tests can pin it; the device passes time.time().
import gc

from updater.tuf import envelope as env, metadata as md, signatures
from updater.tuf.errors import (
    BadVersionNumberError,
    EqualVersionNumberError,
    ExpiredMetadataError,
    RepositoryError,
    RoleNotFoundError,
    UnsignedMetadataError,
)


class TrustedSet:
    def __init__(self, root_data, now, envelope=env.ENVELOPE_METADATA):
        # envelope: envelope.ENVELOPE_METADATA (traditional TUF JSON) or
        # envelope.ENVELOPE_SIMPLE (DSSE); every file of the repository, the
        # initial root included, must use it (as in python-tuf's ngclient).
        if envelope not in env.ENVELOPE_TYPES:
            raise ValueError("unknown envelope type %r" % envelope)
        self.envelope = envelope
        self.now = now
        self._set = {}  # role name -> Signed object
        self._pairs = set()  # (delegator, role) verified pairs
        # 5.2: the initial root is trusted by fiat but must be self-consistent:
        # signed by a threshold of its own root keys. Expiry is not checked
        # here (an expired root can still be updated).
        root, sd, sigs = env.load(root_data, md.ROOT, envelope)
        root_data = None
        signatures.verify_delegate(root, md.ROOT, sd, sigs)
        self._add(md.ROOT, root, md.ROOT)

    # ------------------------------------------------------------ access
    def _add(self, role, signed, delegator):
        self._set[role] = signed
        self._pairs.add((delegator, role))

    def get(self, role):
        return self._set.get(role)

    def contains(self, role, delegator):
        """True if `role` is loaded and was verified against `delegator`."""
        return (delegator, role) in self._pairs

    def forget_delegated(self):
        """Drop every delegated targets role (keeps the top-level four). The
        orchestrator calls this after each target lookup: heap stays bounded
        by one delegation chain, and the next lookup verifies each delegated
        role again against the delegator that leads to it."""
        for role in list(self._set):
            if role not in md.TOP_LEVEL_ROLES:
                del self._set[role]
        for pair in list(self._pairs):
            if pair[1] not in md.TOP_LEVEL_ROLES:
                self._pairs.discard(pair)
        gc.collect()

    @property
    def root(self):
        return self._set[md.ROOT]

    @property
    def timestamp(self):
        return self._set.get(md.TIMESTAMP)

    @property
    def snapshot(self):
        return self._set.get(md.SNAPSHOT)

    @property
    def targets(self):
        return self._set.get(md.TARGETS)

    # ------------------------------------------------------------ root
    def update_root(self, data):
        """5.3: verify new root with a threshold of the trusted root's root
        keys AND of its own root keys; its version must be trusted + 1.
        An expired intermediate root is fine (expiry is checked on the final
        root in update_timestamp)."""
        if md.TIMESTAMP in self._set:
            raise RuntimeError("cannot update root after timestamp")
        new_root, sd, sigs = env.load(data, md.ROOT, self.envelope)
        data = None
        old_role = signatures.delegation_of(self.root, md.ROOT)
        new_role = signatures.delegation_of(new_root, md.ROOT)
        # one canonical-encoding pass verifies for both key sets
        n_old, n_new = signatures.check_signatures(
            sd, sigs, [(old_role, self.root.keys), (new_role, new_root.keys)]
        )
        sd = sigs = None
        if n_old < old_role.threshold:
            raise UnsignedMetadataError(
                "new root: %d of %d signatures by trusted root keys" % (n_old, old_role.threshold)
            )
        if new_root.version != self.root.version + 1:
            raise BadVersionNumberError(
                "expected root version %d, got %d"
                % (self.root.version + 1, new_root.version)
            )
        if n_new < new_role.threshold:
            raise UnsignedMetadataError(
                "new root: %d of %d signatures by its own root keys" % (n_new, new_role.threshold)
            )
        self._add(md.ROOT, new_root, md.ROOT)
        gc.collect()
        return new_root

    # ------------------------------------------------------------ timestamp
    def update_timestamp(self, data):
        """5.4. May be called twice: first with the locally stored timestamp
        (used only for rollback protection), then with the downloaded one.
        Raises EqualVersionNumberError when the new one has the same version
        as the trusted one (the caller keeps the trusted one)."""
        if md.SNAPSHOT in self._set:
            raise RuntimeError("cannot update timestamp after snapshot")
        # 5.3.10: the final root must not be expired.
        if self.root.is_expired(self.now):
            raise ExpiredMetadataError("final root.json is expired")
        new_ts, sd, sigs = env.load(data, md.TIMESTAMP, self.envelope)
        data = None
        signatures.verify_delegate(self.root, md.TIMESTAMP, sd, sigs)
        sd = sigs = None
        old = self.timestamp
        if old is not None:
            # 5.4.3: no rollback of timestamp version ...
            if new_ts.version < old.version:
                raise BadVersionNumberError(
                    "timestamp version %d < trusted %d" % (new_ts.version, old.version)
                )
            if new_ts.version == old.version:
                raise EqualVersionNumberError("timestamp version unchanged")
            # ... nor of the snapshot version it lists.
            if new_ts.snapshot_meta.version < old.snapshot_meta.version:
                raise BadVersionNumberError(
                    "snapshot version %d < trusted %d"
                    % (new_ts.snapshot_meta.version, old.snapshot_meta.version)
                )
        # Loaded even if expired: an expired timestamp still protects against
        # rollback; expiry is raised now and blocks update_snapshot.
        self._add(md.TIMESTAMP, new_ts, md.ROOT)
        self._check_final_timestamp()
        return new_ts

    def _check_final_timestamp(self):
        # 5.4.4 freeze attack
        if self.timestamp.is_expired(self.now):
            raise ExpiredMetadataError("timestamp.json is expired")

    # ------------------------------------------------------------ snapshot
    def update_snapshot(self, data, trusted=False):
        """5.5. `trusted` True for the locally stored snapshot: it was verified
        once, so its hashes are not checked against the new timestamp (only
        its signatures and the final-snapshot checks)."""
        if md.TIMESTAMP not in self._set:
            raise RuntimeError("cannot update snapshot before timestamp")
        if md.TARGETS in self._set:
            raise RuntimeError("cannot update snapshot after targets")
        self._check_final_timestamp()
        meta = self.timestamp.snapshot_meta
        if not trusted:
            # 5.5.2: hashes and length listed in timestamp (mix-and-match)
            meta.verify_length_and_hashes(data)
        new_snap, sd, sigs = env.load(data, md.SNAPSHOT, self.envelope)
        data = None
        signatures.verify_delegate(self.root, md.SNAPSHOT, sd, sigs)
        sd = sigs = None
        old = self.snapshot
        if old is not None:
            # 5.5.5: no role may disappear or roll back
            for name in old.meta:
                if name not in new_snap.meta:
                    raise RepositoryError("new snapshot lacks %s" % name)
                nv = new_snap.version_of(name)
                ov = old.version_of(name)
                if nv < ov:
                    raise BadVersionNumberError(
                        "%s version %d < trusted %d" % (name, nv, ov)
                    )
        self._add(md.SNAPSHOT, new_snap, md.ROOT)
        gc.collect()
        self._check_final_snapshot()
        return new_snap

    def _check_final_snapshot(self):
        # 5.5.6 freeze, 5.5.3 version must match the one timestamp lists
        if self.snapshot.is_expired(self.now):
            raise ExpiredMetadataError("snapshot.json is expired")
        want = self.timestamp.snapshot_meta.version
        if self.snapshot.version != want:
            raise BadVersionNumberError(
                "expected snapshot version %d, got %d" % (want, self.snapshot.version)
            )

    # ------------------------------------------------------------ targets
    def update_targets(self, data):
        return self.update_delegated_targets(data, md.TARGETS, md.ROOT)

    def update_delegated_targets(self, data, role_name, delegator_name):
        """5.6 / 5.6.7: verify `role_name` against the keys and threshold
        that `delegator_name` (root for top-level targets) gives it, its
        length/hashes/version against snapshot, and its expiry."""
        if md.SNAPSHOT not in self._set:
            raise RuntimeError("cannot load targets before snapshot")
        self._check_final_snapshot()
        delegator = self._set.get(delegator_name)
        if delegator is None:
            raise RuntimeError("cannot load %s before its delegator %s" % (role_name, delegator_name))
        meta = self.snapshot.get_meta(role_name + ".json")
        if meta is None:
            raise RoleNotFoundError("snapshot does not list %s.json" % role_name)
        meta.verify_length_and_hashes(data)
        new_t, sd, sigs = env.load(data, md.TARGETS, self.envelope)
        data = None
        signatures.verify_delegate(delegator, role_name, sd, sigs)
        sd = sigs = None
        if new_t.version != meta.version:
            raise BadVersionNumberError(
                "expected %s version %d, got %d" % (role_name, meta.version, new_t.version)
            )
        if new_t.is_expired(self.now):
            raise ExpiredMetadataError("%s is expired" % role_name)
        self._add(role_name, new_t, delegator_name)
        gc.collect()
        return new_t
