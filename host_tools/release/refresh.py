"""``timestamp refresh``: keep a quiet repository alive (safe from cron).

Takes the repository lock (a concurrent publish waits or is waited for),
re-signs every online role that would expire within the margin (default: two
timestamp periods), then issues a new snapshot if a targets role changed (or the
snapshot itself is close to expiry) and always a new timestamp. Running it
twice in a row is harmless: each run leaves a complete, valid repository.
Only the keys of roles actually re-signed are unlocked, so a cron job needs just
``MEDSENTRY_KEY_PASSPHRASE_TIMESTAMP`` on most days.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from .session import Session


@dataclass
class RefreshResult:
    resigned: dict[str, int] = field(default_factory=dict)  # role -> new version
    warnings: list[str] = field(default_factory=list)


def refresh(session: Session, margin: timedelta | None = None) -> RefreshResult:
    repo = session.repo
    repo.check_root_not_expired()
    if margin is None:
        margin = 2 * session.config.expiry_for("timestamp")
    result = RefreshResult()
    snap_version = repo.md("snapshot").signed.version
    for role in repo.publish_top(margin):
        result.resigned[role] = repo.md(role).signed.version
    if repo.md("snapshot").signed.version != snap_version:
        result.resigned["snapshot"] = repo.md("snapshot").signed.version
    result.resigned["timestamp"] = repo.md("timestamp").signed.version
    root = repo.md("root").signed
    if root.expires <= repo.now + timedelta(days=30):
        result.warnings.append(
            f"root version {root.version} expires on {root.expires:%Y-%m-%d}: "
            "run `medsentry keys rotate root` (with the root key holders) before then"
        )
    repo.commit("timestamp refresh")
    return result
