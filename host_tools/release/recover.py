"""``repo recover``: finish an interrupted change and tidy what a crash left.

Every command already finishes a change left in the journal before it does
anything else (:func:`..journal.recover_pending`, called by ``open_session``).
This explicit form also removes temp files of killed writers, repairs a
rotation that an older medsentry (which had no journal) left half done - the
new root landed, the rotated role still signed with the old key - by
re-signing that role (and snapshot, timestamp) with the key the new root
trusts, moves key files no role trusts to ``keys/retired/``, and verifies the
whole repository.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import ReleaseConfig
from .errors import NotInitialized
from .fsutil import exclusive_lock, remove_stale_temps
from .journal import recover_pending
from .keys import EnvPassphrases, KeyStore, PassphraseSource, retire_key_files
from .layout import Layout
from .roles.repository import TOP_LEVEL, ReleaseRepository


@dataclass
class RecoverResult:
    finished: str | None = None  # the interrupted change completed, if any
    resigned: list[str] = field(default_factory=list)  # roles of a half-done old rotation
    temps: list[Path] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)  # key files moved to keys/retired
    versions: dict[str, int] = field(default_factory=dict)


def recover_workdir(
    workdir: str | Path, passphrases: PassphraseSource | None = None, lock_timeout: float = 60.0
) -> RecoverResult:
    """`passphrases` unlock the online keys, needed only to repair an old rotation."""
    layout = Layout.of(workdir)
    if not layout.metadata.is_dir():
        raise NotInitialized(f"no repository in {layout.repository}: run `medsentry keys init` first")
    result = RecoverResult()
    with exclusive_lock(layout.lock, lock_timeout):
        result.finished = recover_pending(layout)
        result.temps = remove_stale_temps(layout.repository, layout.keys, layout.recall_record.parent)
        result.temps += remove_stale_temps(layout.workdir, recursive=False)
        keystore = KeyStore(layout, passphrases or EnvPassphrases())
        repo = ReleaseRepository.load(layout, ReleaseConfig.load(layout.config), keystore, repair_rotation=True)
        if repo.stale_roles:
            result.resigned = _resign(repo)
        repo.verify_all()
        trusted: set[str] = set()
        for role in (*TOP_LEVEL, *repo.models()):
            trusted.update(repo.role_keys(role)[0])
            result.versions[role] = repo.md(role).signed.version
        for keyid, (_, pem) in sorted(keystore.index().items()):
            if keyid not in trusted:
                retire_key_files(layout, keyid)
                result.orphans.append(pem.name)
    return result


def _resign(repo: ReleaseRepository) -> list[str]:
    stale = list(repo.stale_roles)
    repo.unlock(*stale, "snapshot", "timestamp")
    if "targets" in stale:
        with repo.edit_targets():
            pass
    repo.do_snapshot(force="snapshot" in stale)
    repo.do_timestamp(force=True)
    repo.commit("repair of a half-done rotation")
    repo.stale_roles.clear()
    return stale
