"""``keys init``: generate the keys and the first version of the repository."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tuf.api.metadata import Metadata, Role, Root

from .config import ReleaseConfig
from .errors import AlreadyInitialized, WeakPassphrase
from .fsutil import Write, exclusive_lock
from .journal import recover_pending
from .keys import ONLINE_ROLES, KeyStore, NewKey, PassphraseSource, root_key_name
from .layout import Layout
from .roles.repository import ReleaseRepository, utcnow


@dataclass
class InitResult:
    root_keyids: list[str]
    online_keyids: dict[str, str]
    root_path: Path


def init_workdir(
    workdir: str | Path,
    passphrases: PassphraseSource,
    config: ReleaseConfig | None = None,
    now: datetime | None = None,
) -> InitResult:
    """Create root keys (threshold `config.root_threshold` of
    `config.root_keys`), one online key each for targets, snapshot and
    timestamp, and version 1 of root, targets (no models yet), snapshot and
    timestamp. Consistent snapshots are on."""
    layout = Layout.of(workdir)
    config = (config or ReleaseConfig()).validate()
    keystore = KeyStore(layout, passphrases)
    with exclusive_lock(layout.lock):
        recover_pending(layout)
        if keystore.any_keys() or layout.metadata.exists():
            raise AlreadyInitialized(
                f"{layout.workdir} already holds keys or a repository; "
                "use `medsentry keys rotate` to replace keys"
            )
        now = (now or utcnow()).replace(microsecond=0)
        root_keys: list[NewKey] = []
        seen: dict[str, str] = {}
        for i in range(1, config.root_keys + 1):
            k = keystore.new_key(root_key_name(i), config.key_type)
            if k.passphrase in seen:
                raise WeakPassphrase(
                    f"root keys {seen[k.passphrase]!r} and {k.name!r} have the same passphrase; "
                    "give each root key its own"
                )
            seen[k.passphrase] = k.name
            root_keys.append(k)
        online = {role: keystore.new_key(role, config.key_type) for role in ONLINE_ROLES}

        root = Root(
            version=1,
            expires=now + config.expiry_for("root"),
            consistent_snapshot=True,
            roles={r: Role([], 1) for r in ("root", *ONLINE_ROLES)},
        )
        root.roles["root"].threshold = config.root_threshold
        for k in root_keys:
            root.add_key(k.public, "root")
        for role, k in online.items():
            root.add_key(k.public, role)
        root_md = Metadata(root)
        for k in root_keys:
            root_md.sign(k.signer(), append=True)

        repo = ReleaseRepository(layout, config, keystore, now)
        repo.stage_root(root_md)
        for role, k in online.items():
            repo.signer_override[role] = [k.signer()]
        with repo.edit_targets():
            pass
        repo.publish_top()

        def key_files() -> list[Write]:
            files = [w for k in [*root_keys, *online.values()] for w in keystore.key_files(k)]
            return [*files, Write(layout.config, config.validate().to_json())]

        repo.before_commit(key_files)
        layout.targets.mkdir(parents=True, exist_ok=True)
        repo.commit("keys init")
        return InitResult(
            [k.keyid for k in root_keys],
            {r: k.keyid for r, k in online.items()},
            layout.metadata / "1.root.json",
        )
