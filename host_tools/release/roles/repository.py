"""The medsentry TUF repository on disk, built on python-tuf's Metadata API and
its ``tuf.repository.Repository`` abstraction.

Loading verifies everything already on disk (the whole root chain, then
timestamp -> snapshot -> targets -> model roles, signatures and hashes), so the
tool never builds on a tampered or half-written state.

Changes are *staged in memory*: python-tuf's ``edit()``/``do_snapshot()``/
``do_timestamp()`` call :meth:`close`, which bumps the version, sets the expiry,
signs and keeps the bytes. Nothing touches the disk until :meth:`commit`, which
journals the whole change and then writes in this order: new key files, target
files, delegated and top-level targets metadata, snapshot, root, and
``timestamp.json`` last (each file via a temp file + fsync + rename). A client
only sees a new state once the new timestamp is in place, and every file it can
then reach is already there. A process killed on the way leaves the journal,
and the next command finishes the change (see :mod:`..journal`).
"""
from __future__ import annotations

import copy
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from securesystemslib.signer import Signer
from tuf.api.exceptions import RepositoryError as TufRepositoryError
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Role,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer
from tuf.repository import Repository

from ..config import ReleaseConfig
from ..errors import NotInitialized, RepositoryError, RootExpired
from ..fsutil import Write
from ..journal import Change, commit_change
from ..keys import KeyStore
from ..layout import Layout

TOP_LEVEL = ("root", "targets", "snapshot", "timestamp")
SERIALIZER = JSONSerializer(compact=True)
_ROOT_RE = re.compile(r"^(\d+)\.root\.json$")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def metafile_for(data: bytes, version: int) -> MetaFile:
    """MetaFile with version, length and sha256 (TUF's optional hash/length
    checks, which the device client enforces)."""
    mf = MetaFile.from_data(version, data, ["sha256"])
    return mf


class ReleaseRepository(Repository):
    """Verified, staged view of ``<workdir>/repository``.

    `signers_for(role)` is consulted lazily the first time a role is signed; it
    returns the signers to use (at least the role's threshold).
    """

    def __init__(
        self,
        layout: Layout,
        config: ReleaseConfig,
        keystore: KeyStore,
        now: datetime | None = None,
    ) -> None:
        self.layout = layout
        self.config = config
        self.keystore = keystore
        self.now = (now or utcnow()).replace(microsecond=0)
        self._md: dict[str, Metadata] = {}
        self._bytes: dict[str, bytes] = {}
        self.root_history: list[Metadata[Root]] = []
        self._signers: dict[str, list[Signer]] = {}
        self.signer_override: dict[str, list[Signer]] = {}
        self._fresh: set[str] = set()
        self._unverified: set[str] = set()
        self.repair_rotation = False
        self.stale_roles: list[str] = []
        # staged writes
        self._staged_meta: dict[str, bytes] = {}  # file name under metadata/ -> bytes
        self._staged_targets: dict[str, bytes] = {}  # path under targets/ -> bytes
        self._staged_roots: list[tuple[int, bytes]] = []
        self._pre_commit: list[Callable[[], list[Write]]] = []
        self._extra_writes: list[Write] = []
        self._retire: list[str] = []

    # ------------------------------------------------------------------ load
    @classmethod
    def load(
        cls,
        layout: Layout,
        config: ReleaseConfig,
        keystore: KeyStore,
        now: datetime | None = None,
        repair_rotation: bool = False,
    ) -> "ReleaseRepository":
        """Load and verify. `repair_rotation` (``repo recover`` only) accepts
        top-level roles still signed under the previous root - what a rotation
        killed by an older medsentry, which had no journal, left - and lists
        them in `stale_roles` for re-signing."""
        repo = cls(layout, config, keystore, now)
        repo.repair_rotation = repair_rotation
        repo._load()
        return repo

    def _verify_top(self, role: str, md: Metadata) -> None:
        try:
            self._md["root"].signed.verify_delegate(role, md.signed_bytes, md.signatures)
        except UnsignedMetadataError:
            if not self.repair_rotation or len(self.root_history) < 2:
                raise
            self.root_history[-2].signed.verify_delegate(role, md.signed_bytes, md.signatures)
            self.stale_roles.append(role)

    def _read(self, name: str, kind: type = Signed) -> tuple[Metadata, bytes]:
        path = self.layout.metadata / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise RepositoryError(f"the repository is missing {path}") from None
        try:
            md = Metadata.from_bytes(data)
        except DeserializationError as exc:
            raise RepositoryError(f"{path} is not valid TUF metadata: {exc}") from None
        if not isinstance(md.signed, kind):
            raise RepositoryError(f"{path} holds {md.signed.type} metadata, expected {kind.type}")
        return md, data

    def root_versions(self) -> list[int]:
        if not self.layout.metadata.is_dir():
            return []
        out = []
        for p in self.layout.metadata.iterdir():
            m = _ROOT_RE.match(p.name)
            if m:
                out.append(int(m.group(1)))
        return sorted(out)

    def _load(self) -> None:
        versions = self.root_versions()
        if not versions:
            raise NotInitialized(
                f"no repository in {self.layout.repository}: run `medsentry keys init` first"
            )
        if versions != list(range(1, len(versions) + 1)):
            raise RepositoryError(f"root versions on disk are not contiguous: {versions}")
        prev: Metadata[Root] | None = None
        try:
            for v in versions:
                md, data = self._read(f"{v}.root.json", Root)
                if md.signed.version != v:
                    raise RepositoryError(f"{v}.root.json is not root version {v}")
                if prev is not None:
                    prev.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
                md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
                self.root_history.append(md)
                prev = md
            self._md["root"], self._bytes["root"] = md, data

            ts, data = self._read("timestamp.json", Timestamp)
            self._verify_top(Timestamp.type, ts)
            self._md["timestamp"], self._bytes["timestamp"] = ts, data

            snap_meta = ts.signed.snapshot_meta
            snap, data = self._read(f"{snap_meta.version}.snapshot.json", Snapshot)
            snap_meta.verify_length_and_hashes(data)
            self._verify_top(Snapshot.type, snap)
            if snap.signed.version != snap_meta.version:
                raise RepositoryError("snapshot version does not match timestamp")
            self._md["snapshot"], self._bytes["snapshot"] = snap, data

            meta = snap.signed.meta
            tmeta = meta.get("targets.json")
            if tmeta is None:
                raise RepositoryError("snapshot does not list targets.json")
            targets, data = self._read(f"{tmeta.version}.targets.json", Targets)
            tmeta.verify_length_and_hashes(data)
            self._verify_top(Targets.type, targets)
            self._md["targets"], self._bytes["targets"] = targets, data
            self._loaded_targets = targets

            for role in self.models():
                rmeta = meta.get(f"{role}.json")
                if rmeta is None:
                    raise RepositoryError(f"snapshot does not list {role}.json")
                md, data = self._read(f"{rmeta.version}.{role}.json", Targets)
                # bound to the verified snapshot by hash and length now; the
                # role's own signatures are checked on first use (md()), so a
                # publish to one model does not re-verify all the others
                rmeta.verify_length_and_hashes(data)
                if md.signed.version != rmeta.version:
                    raise RepositoryError(f"{role} version does not match snapshot")
                self._md[role], self._bytes[role] = md, data
                self._unverified.add(role)
        except (TufRepositoryError, ValueError) as exc:
            raise RepositoryError(f"the repository on disk does not verify: {exc}") from None

    def _verify_delegated(self, role: str) -> None:
        md = self._md[role]
        try:
            # against the delegator as loaded from disk (not a staged edit)
            self._loaded_targets.signed.verify_delegate(role, md.signed_bytes, md.signatures)
        except (TufRepositoryError, ValueError) as exc:
            raise RepositoryError(f"the repository on disk does not verify: {role}: {exc}") from None
        self._unverified.discard(role)

    def verify_all(self) -> None:
        """Check the signatures of every delegated role now."""
        for role in list(self._unverified):
            self._verify_delegated(role)

    # ------------------------------------------------------------ accessors
    def md(self, role: str) -> Metadata:
        """A role's current metadata, signature-verified."""
        if role in self._unverified:
            self._verify_delegated(role)
        return self._md[role]

    def expires(self, role: str) -> datetime:
        return self._md[role].signed.expires

    def models(self) -> list[str]:
        """Device models, i.e. delegated roles of the top-level targets role."""
        targets = self._md.get("targets")
        if targets is None or targets.signed.delegations is None:
            return []
        roles = targets.signed.delegations.roles or {}
        return sorted(roles)

    def check_root_not_expired(self) -> None:
        root: Root = self._md["root"].signed
        if root.is_expired(self.now):
            raise RootExpired(
                f"root metadata version {root.version} expired on {root.expires:%Y-%m-%d %H:%M} UTC; "
                "devices will not accept anything signed under it: run `medsentry keys rotate root` "
                "(it issues a new root signed by the root key holders) before publishing"
            )

    # ------------------------------------------------------ python-tuf hooks
    def open(self, role: str) -> Metadata:
        if role in self._md:
            return copy.deepcopy(self.md(role))
        # First version of a role: close() keeps version 1 for it.
        self._fresh.add(role)
        if role == Timestamp.type:
            signed = Timestamp()
        elif role == Snapshot.type:
            signed = Snapshot()
        elif role == Targets.type:
            signed = Targets()
            signed.delegations = Delegations(keys={}, roles={})
        elif role == Root.type:
            raise AssertionError("root is created by init, not open()")
        else:
            signed = Targets()
        return Metadata(signed)

    def close(self, role: str, md: Metadata) -> None:
        """Bump version, set expiry, sign with the role's keys, stage the bytes."""
        if role in self._fresh:
            self._fresh.discard(role)
        else:
            md.signed.version += 1
        md.signed.expires = self.now + self.config.expiry_for(role)
        self._sign_and_stage(role, md)

    def _sign_and_stage(self, role: str, md: Metadata) -> None:
        md.signatures.clear()
        for signer in self.signers_for(role):
            md.sign(signer, append=True)
        self._verify_own(role, md)
        data = md.to_bytes(SERIALIZER)
        self._md[role], self._bytes[role] = md, data
        self._unverified.discard(role)
        if role == Timestamp.type:
            self._staged_meta["timestamp.json"] = data
        elif role == Root.type:
            self._staged_roots.append((md.signed.version, data))
        else:
            self._staged_meta[f"{md.signed.version}.{role}.json"] = data

    def _verify_own(self, role: str, md: Metadata) -> None:
        """Check the freshly signed metadata against its delegator (catches a
        key that is not the trusted one before anything is written)."""
        try:
            if role in ("targets", "snapshot", "timestamp"):
                self._md["root"].signed.verify_delegate(role, md.signed_bytes, md.signatures)
            elif role != "root":
                self._md["targets"].signed.verify_delegate(role, md.signed_bytes, md.signatures)
        except UnsignedMetadataError as exc:
            raise RepositoryError(f"signing {role} did not reach its threshold: {exc}") from None

    def signers_for(self, role: str) -> list[Signer]:
        if role in self.signer_override:
            return self.signer_override[role]
        if role not in self._signers:
            keyids, threshold = self.role_keys(role)
            self._signers[role] = self.keystore.threshold_signers(keyids, threshold, role)
        return self._signers[role]

    def role_keys(self, role: str) -> tuple[list[str], int]:
        if role in TOP_LEVEL:
            r: Role = self._md["root"].signed.roles[role]
            return list(r.keyids), r.threshold
        d: DelegatedRole = self._md["targets"].signed.delegations.roles[role]
        return list(d.keyids), d.threshold

    def unlock(self, *roles: str) -> None:
        """Unlock the keys of `roles` now, so passphrase problems show up before
        any work is done."""
        for role in roles:
            self.signers_for(role)

    @property
    def targets_infos(self) -> dict[str, MetaFile]:
        out = {}
        for role in ["targets", *self.models()]:
            md = self._md.get(role)
            if md is not None:
                out[f"{role}.json"] = metafile_for(self._bytes[role], md.signed.version)
        return out

    @property
    def snapshot_info(self) -> MetaFile:
        return metafile_for(self._bytes["snapshot"], self._md["snapshot"].signed.version)

    # ------------------------------------------------------------- staging
    def stage_target(self, target_path: str, data: bytes, custom: dict | None = None) -> TargetFile:
        """Stage a target file (stored hash-prefixed, as consistent snapshots
        require) and return its TargetFile for a role's ``targets``."""
        tf = TargetFile.from_data(target_path, data, ["sha256"])
        if custom is not None:
            tf.unrecognized_fields["custom"] = custom
        dirname, sep, base = target_path.rpartition("/")
        stored = f"{dirname}{sep}{tf.hashes['sha256']}.{base}"
        self._staged_targets[stored] = data
        return tf

    def stage_root(self, md: Metadata[Root]) -> None:
        """Stage a new root already signed by the caller (rotation)."""
        data = md.to_bytes(SERIALIZER)
        self._md["root"], self._bytes["root"] = md, data
        self._staged_roots.append((md.signed.version, data))
        self._signers.clear()

    def before_commit(self, fn: Callable[[], list[Write]]) -> None:
        """Add the files `fn` returns (e.g. new key files) at the head of the
        commit, before any metadata that trusts them."""
        self._pre_commit.append(fn)

    def also_write(self, path: Path, data: bytes) -> None:
        """Land `path` with the commit, after ``timestamp.json`` (local records)."""
        self._extra_writes.append(Write(path, data))

    def retire_after_commit(self, keyids: list[str]) -> None:
        """Move these replaced keys to ``keys/retired`` as part of the commit."""
        self._retire.extend(keyids)

    def has_changes(self) -> bool:
        return bool(self._staged_meta or self._staged_roots or self._staged_targets)

    # -------------------------------------------------------------- commit
    def commit(self, what: str = "repository change") -> list[str]:
        """Land everything staged as one journaled change (:mod:`..journal`):
        new key files, target files, delegated then top-level targets metadata,
        snapshot, root, and ``timestamp.json`` last. Returns the metadata file
        names written."""
        writes: list[Write] = []
        for fn in self._pre_commit:
            writes.extend(fn())
        for stored, data in sorted(self._staged_targets.items()):
            writes.append(Write(self.layout.targets / stored, data))
        names = [n for n in self._staged_meta if n != "timestamp.json"]
        # delegated model roles first, then top-level targets, then snapshot
        names.sort(key=lambda n: (n.endswith(".snapshot.json"), n.endswith(".targets.json"), n))
        for version, data in sorted(self._staged_roots):
            names.append(f"{version}.root.json")
            self._staged_meta[f"{version}.root.json"] = data
        if self._staged_roots:
            self._staged_meta["root.json"] = sorted(self._staged_roots)[-1][1]
            names.append("root.json")
        if "timestamp.json" in self._staged_meta:
            names.append("timestamp.json")
        writes.extend(Write(self.layout.metadata / n, self._staged_meta[n]) for n in names)
        writes.extend(self._extra_writes)
        commit_change(self.layout, Change(what, writes, list(self._retire)))
        self._staged_meta.clear()
        self._staged_targets.clear()
        self._staged_roots.clear()
        self._pre_commit.clear()
        self._extra_writes.clear()
        self._retire.clear()
        return [n for n in names if n != "root.json"]

    # -------------------------------------------------------------- helpers
    def refresh_margin(self) -> timedelta:
        """Online roles expiring within this are re-signed whenever the
        repository changes (and by ``timestamp refresh``): two timestamp periods."""
        return 2 * self.config.expiry_for("timestamp")

    def resign_due(self, margin: timedelta | None = None) -> list[str]:
        """Re-sign every targets role (top-level and models) expiring within
        `margin`; returns the roles re-signed."""
        horizon = self.now + (self.refresh_margin() if margin is None else margin)
        done = []
        for role in ["targets", *self.models()]:
            if self.expires(role) <= horizon:
                with self.edit_targets(role):
                    pass
                done.append(role)
        return done

    def publish_top(self, margin: timedelta | None = None) -> list[str]:
        """Re-sign roles near expiry, then a new snapshot (if any targets role
        changed or the snapshot is near expiry) and always a new timestamp.
        Returns the roles re-signed for being near expiry."""
        due = self.resign_due(margin)
        horizon = self.now + (self.refresh_margin() if margin is None else margin)
        snap = self._md.get("snapshot")
        self.do_snapshot(force=snap is not None and snap.signed.expires <= horizon)
        self.do_timestamp(force=True)
        return due
