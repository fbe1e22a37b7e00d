"""Open the work directory for a repository operation: lock, config, keys, repo."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .config import ReleaseConfig
from .fsutil import exclusive_lock
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
    """Lock the repository (for changes) and load it, verified."""
    layout = Layout.of(workdir)
    keystore = KeyStore(layout, passphrases or EnvPassphrases())
    ctx = exclusive_lock(layout.lock, lock_timeout) if lock else contextlib.nullcontext()
    with ctx:
        config = ReleaseConfig.load(layout.config)
        repo = ReleaseRepository.load(layout, config, keystore, now)
        yield Session(layout, config, keystore, repo)
