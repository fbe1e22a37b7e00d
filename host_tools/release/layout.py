"""Where things live inside the work directory (default ``.medsentry/``).

::

    <workdir>/release-config.json     expiries, key type, root threshold
    <workdir>/keys/<name>.pem         encrypted PKCS#8 private key (one file per key)
    <workdir>/keys/<name>.pub.json    its public key as TUF writes it (keyid + key)
    <workdir>/keys/retired/           keys replaced by `keys rotate`
    <workdir>/repository/metadata/    TUF metadata (consistent snapshots)
    <workdir>/repository/targets/     target files, ``<model>/<sha256>.<name>``
    <workdir>/repository.lock         flock taken by every repository change
    <workdir>/repository.journal      intent journal of a change being written (journal.py)
    <workdir>/packages/               built packages and their SBOMs
    <workdir>/release/recalls.json    local record of recalls (for the assessment)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    workdir: Path

    @classmethod
    def of(cls, workdir: str | Path) -> "Layout":
        return cls(Path(workdir))

    @property
    def config(self) -> Path:
        return self.workdir / "release-config.json"

    @property
    def keys(self) -> Path:
        return self.workdir / "keys"

    @property
    def retired_keys(self) -> Path:
        return self.keys / "retired"

    @property
    def repository(self) -> Path:
        return self.workdir / "repository"

    @property
    def metadata(self) -> Path:
        return self.repository / "metadata"

    @property
    def targets(self) -> Path:
        return self.repository / "targets"

    @property
    def lock(self) -> Path:
        return self.workdir / "repository.lock"

    @property
    def journal(self) -> Path:
        return self.workdir / "repository.journal"

    @property
    def packages(self) -> Path:
        return self.workdir / "packages"

    @property
    def recall_record(self) -> Path:
        return self.workdir / "release" / "recalls.json"
