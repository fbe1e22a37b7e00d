"""Intent journal: every repository change lands whole or not at all.

A change (publish, recall, rotation, timestamp refresh, add-model, init) is
first staged in memory: every file it will write - key files, target files,
metadata, ``timestamp.json`` last - is signed and verified before anything
touches the disk. :func:`commit_change` then writes the whole plan to
``<workdir>/repository.journal`` (one atomic write, mode 0600: it holds the new
key files, which are encrypted) before the first file lands. From that moment
the change is *committed*: the files are written in order, replaced keys move
to ``keys/retired/``, and the journal is removed last.

If the process dies on the way (SIGKILL, power loss), the next command that
opens the work directory - or ``medsentry repo recover`` - finds the journal
under the repository lock and finishes the change (:func:`recover_pending`):
rewriting a file that already landed is harmless, so replaying the plan is
always safe and needs no key or passphrase. Rolling forward, never back, is
deliberate: once ``N.root.json`` has landed, a client may already trust it, and
only the completed change gives it a timestamp it can verify.

An ordinary error while writing (disk full, permissions) before any root file
landed rolls the change back and removes the journal; after a root file it
keeps the journal for recovery. Ctrl-C while a committed change is written is
deferred until the change is complete (see :func:`interrupted_commit`).
"""
from __future__ import annotations

import base64
import contextlib
import json
import re
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RepositoryError
from .fsutil import Write, remove, remove_stale_temps, write_atomic
from .keys import retire_key_files
from .layout import Layout

FORMAT = 1
_ROOT_FILE = re.compile(r"^(\d+\.)?root\.json$")
_state = {"committed": 0, "interrupted": False}


@dataclass
class Change:
    what: str
    writes: list[Write] = field(default_factory=list)
    retire: list[str] = field(default_factory=list)  # key ids whose files move to keys/retired


def committed_in_process() -> bool:
    """True once this process committed a change (a later Ctrl-C must not claim
    the command was aborted)."""
    return _state["committed"] > 0


def interrupted_commit() -> bool:
    """True if a Ctrl-C arrived while a committed change was being written."""
    return bool(_state["interrupted"])


@contextlib.contextmanager
def deferred_sigint() -> Iterator[None]:
    """Hold Ctrl-C until the block ends (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum, frame) -> None:
        _state["interrupted"] = True

    old = signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _encode(layout: Layout, change: Change) -> bytes:
    root = layout.workdir.resolve()
    writes = []
    for w in change.writes:
        rel = w.path.resolve().relative_to(root)
        writes.append({"path": rel.as_posix(), "mode": w.mode, "data": base64.b64encode(w.data).decode()})
    doc = {"format": FORMAT, "what": change.what, "writes": writes, "retire": change.retire}
    return json.dumps(doc).encode()


def _decode(layout: Layout, data: bytes) -> Change:
    path = layout.journal
    try:
        doc = json.loads(data)
        if doc.get("format") != FORMAT:
            raise ValueError(f"unknown journal format {doc.get('format')!r}")
        root = layout.workdir.resolve()
        writes = []
        for w in doc["writes"]:
            target = (root / w["path"]).resolve()
            if root not in target.parents:
                raise ValueError(f"path {w['path']!r} leaves the work directory")
            writes.append(Write(target, base64.b64decode(w["data"], validate=True), int(w["mode"])))
        return Change(str(doc["what"]), writes, [str(k) for k in doc["retire"]])
    except (ValueError, KeyError, TypeError) as exc:
        raise RepositoryError(
            f"{path} is not a readable change journal ({exc}); it was written by another tool "
            "or edited: move it away and check the repository with `medsentry repo status`"
        ) from None


def _finish(layout: Layout, change: Change) -> None:
    for w in change.writes:
        if not w.landed():
            write_atomic(w.path, w.data, w.mode)
    for keyid in change.retire:
        retire_key_files(layout, keyid)
    remove(layout.journal)


def commit_change(layout: Layout, change: Change) -> None:
    """Journal `change`, then apply it (see the module docstring)."""
    change.writes = [w for w in change.writes if not w.landed()]
    if not change.writes and not change.retire:
        return
    with deferred_sigint():
        write_atomic(layout.journal, _encode(layout, change), 0o600)
        _state["committed"] += 1
        landed: list[tuple[Path, bytes | None]] = []
        try:
            for w in change.writes:
                old = w.path.read_bytes() if w.path.exists() else None
                write_atomic(w.path, w.data, w.mode)
                landed.append((w.path, old))
        except Exception as exc:
            if any(_ROOT_FILE.match(p.name) for p, _ in landed):
                raise RepositoryError(
                    f"the {change.what} could not be finished ({exc}); root metadata already "
                    f"landed, so it is kept in {layout.journal}: fix the cause and run "
                    "`medsentry repo recover`"
                ) from None
            for path, old in reversed(landed):
                if old is None:
                    remove(path)
                else:
                    write_atomic(path, old)
            remove(layout.journal)
            _state["committed"] -= 1
            raise
        for keyid in change.retire:
            retire_key_files(layout, keyid)
        remove(layout.journal)


def recover_pending(layout: Layout) -> str | None:
    """Finish a change an earlier process left in the journal (call under the
    repository lock). Returns what it was, or None when there was none."""
    if not layout.journal.exists():
        remove_stale_temps(layout.workdir, recursive=False)  # a journal that never landed
        return None
    change = _decode(layout, layout.journal.read_bytes())
    with deferred_sigint():
        _finish(layout, change)
    remove_stale_temps(layout.repository, layout.keys, layout.recall_record.parent)
    remove_stale_temps(layout.workdir, recursive=False)
    return change.what
