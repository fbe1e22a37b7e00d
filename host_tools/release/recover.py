"""``repo recover``: finish an interrupted change and tidy what a crash left.

Every command already finishes a change left in the journal before it does
anything else (:func:`..journal.recover_pending`, called by ``open_session``).
This explicit form also removes temp files of killed writers, moves key files
no role trusts (orphans of a rotation interrupted by an older medsentry, which
had no journal) to ``keys/retired/``, and verifies the whole repository.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import ReleaseConfig
from .fsutil import exclusive_lock, remove_stale_temps
from .journal import recover_pending
from .keys import EnvPassphrases, KeyStore, retire_key_files
from .layout import Layout
from .roles.repository import TOP_LEVEL, ReleaseRepository


@dataclass
class RecoverResult:
    finished: str | None = None  # the interrupted change completed, if any
    temps: list[Path] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)  # key files moved to keys/retired
    versions: dict[str, int] = field(default_factory=dict)


def recover_workdir(workdir: str | Path, lock_timeout: float = 60.0) -> RecoverResult:
    layout = Layout.of(workdir)
    result = RecoverResult()
    with exclusive_lock(layout.lock, lock_timeout):
        result.finished = recover_pending(layout)
        result.temps = remove_stale_temps(layout.repository, layout.keys, layout.recall_record.parent)
        result.temps += remove_stale_temps(layout.workdir, recursive=False)
        keystore = KeyStore(layout, EnvPassphrases({}))
        repo = ReleaseRepository.load(layout, ReleaseConfig.load(layout.config), keystore)
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
