"""Open the work directory for a repository operation: lock, config, keys, repo."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .config import ReleaseConfig
from .fsutil import exclusive_lock
from .journal import recover_pending
from .keys import EnvPassphrases, KeyStore, PassphraseSource
from .layout import Layout
from .roles.repository import ReleaseRepository


@dataclass
class Session:
    layout: Layout
    config: ReleaseConfig
    keystore: KeyStore
    repo: ReleaseRepository


@contextlib.contextmanager
def open_session(
    workdir: str | Path,
    passphrases: PassphraseSource | None = None,
    now: datetime | None = None,
    lock: bool = True,
    lock_timeout: float = 60.0,
) -> Iterator[Session]:
    """Lock the repository (for changes), finish a change an interrupted
    command left in the journal, and load the repository, verified. A reader
    (`lock` False) takes the lock only when there is a change to finish."""
    layout = Layout.of(workdir)
    keystore = KeyStore(layout, passphrases or EnvPassphrases())
    if not lock and layout.journal.exists():
        with exclusive_lock(layout.lock, lock_timeout):
            recover_pending(layout)
    ctx = exclusive_lock(layout.lock, lock_timeout) if lock else contextlib.nullcontext()
    with ctx:
        if lock:
            recover_pending(layout)
        config = ReleaseConfig.load(layout.config)
        repo = ReleaseRepository.load(layout, config, keystore, now)
        yield Session(layout, config, keystore, repo)
