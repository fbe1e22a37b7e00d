"""``keys rotate ROLE``: replace the key(s) of a role.

* ``root``: the next root version replaces the chosen root keys (default: all
  of them) and is signed by a threshold of the old root's keys *and* a
  threshold of the new root's keys, as TUF requires for clients to follow it.
  Works when the current root has already expired (that is the way out).
* ``targets`` / ``snapshot`` / ``timestamp``: a new root (signed as above)
  trusts the new key, and the role is re-signed with it right away (plus new
  snapshot and timestamp).
* a model name (``pump-v2``): the top-level targets role delegates to the new
  key and the model's role is re-signed with it (no root keys needed).

New key files are written before the metadata that trusts them; replaced key
files move to ``keys/retired/`` at the end of the same journaled commit, so a
killed rotation is finished by the next command and leaves no orphan key.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root

from .errors import ConfigError, MissingKey, UnknownModel, WeakPassphrase
from .keys import ONLINE_ROLES, NewKey, model_key_name
from .session import Session


@dataclass
class RotationResult:
    role: str
    root_version: int | None
    old_keyids: list[str]
    new_keyids: list[str]


def _sign_root(session: Session, new_root: Metadata[Root], new_keys: list[NewKey]) -> None:
    """Sign with a threshold of the old root's keys and enough of the new
    root's keys; verify both before anything is staged."""
    repo = session.repo
    old_root: Root = repo.md("root").signed
    old_role = old_root.roles["root"]
    signers = {s.public_key.keyid: s for s in session.keystore.threshold_signers(
        list(old_role.keyids), old_role.threshold, "root")}
    for k in new_keys:
        if k.keyid in new_root.signed.roles["root"].keyids:
            signers[k.keyid] = k.signer()
    new_role = new_root.signed.roles["root"]
    have = [k for k in new_role.keyids if k in signers]
    for keyid in new_role.keyids:
        if len(have) >= new_role.threshold:
            break
        if keyid not in signers:
            try:
                signers[keyid] = session.keystore.signer(keyid, "root")
                have.append(keyid)
            except MissingKey:
                continue
    new_root.signatures.clear()
    for s in signers.values():
        new_root.sign(s, append=True)
    try:
        old_root.verify_delegate("root", new_root.signed_bytes, new_root.signatures)
        new_root.signed.verify_delegate("root", new_root.signed_bytes, new_root.signatures)
    except UnsignedMetadataError as exc:
        raise MissingKey(f"the new root does not reach both thresholds: {exc}") from None


def _next_root(session: Session) -> Metadata[Root]:
    repo = session.repo
    md = copy.deepcopy(repo.md("root"))
    md.signed.version += 1
    md.signed.expires = repo.now + session.config.expiry_for("root")
    return md


def rotate_key(
    session: Session,
    role: str,
    replace: list[str] | None = None,
    key_type: str | None = None,
) -> RotationResult:
    repo = session.repo
    key_type = key_type or session.config.key_type
    keystore = session.keystore
    new_keys: list[NewKey] = []
    old_ids: list[str] = []

    if role == "root":
        root_role = repo.md("root").signed.roles["root"]
        names = {keyid: keystore.name_of(keyid) for keyid in root_role.keyids}
        if replace:
            unknown = [n for n in replace if n not in names.values()]
            if unknown:
                raise ConfigError(
                    f"not a current root key: {', '.join(unknown)} "
                    f"(current: {', '.join(sorted(n for n in names.values() if n))})"
                )
            old_ids = [k for k, n in names.items() if n in replace]
        else:
            old_ids = list(root_role.keyids)
        new_root = _next_root(session)
        for i, keyid in enumerate(old_ids, 1):
            name = names.get(keyid) or f"root-{i}"
            k = keystore.new_key(name, key_type, rotation=True)
            if any(k.passphrase == other.passphrase for other in new_keys):
                raise WeakPassphrase("each new root key needs its own passphrase")
            new_root.signed.revoke_key(keyid, "root")
            new_root.signed.add_key(k.public, "root")
            new_keys.append(k)
        _sign_root(session, new_root, new_keys)
        repo.stage_root(new_root)
    elif role in ONLINE_ROLES:
        repo.unlock(*[r for r in ("targets", "snapshot", "timestamp") if r != role])
        old_ids = list(repo.md("root").signed.roles[role].keyids)
        k = keystore.new_key(role, key_type, rotation=True)
        new_root = _next_root(session)
        for keyid in old_ids:
            new_root.signed.revoke_key(keyid, role)
        new_root.signed.add_key(k.public, role)
        new_keys.append(k)
        _sign_root(session, new_root, [])
        # keep already unlocked online signers; the rotated role uses the new key
        keep = {r: repo.signers_for(r) for r in ("targets", "snapshot", "timestamp") if r != role}
        repo.stage_root(new_root)
        repo.signer_override.update(keep)
        repo.signer_override[role] = [k.signer()]
        if role == "targets":
            with repo.edit_targets():
                pass
            repo.publish_top()
        elif role == "snapshot":
            repo.do_snapshot(force=True)
            repo.do_timestamp(force=True)
        else:
            repo.do_timestamp(force=True)
    else:
        if role not in repo.models():
            raise UnknownModel(
                f"unknown role {role!r}: use root, targets, snapshot, timestamp or a model "
                f"({', '.join(repo.models()) or 'none yet'})"
            )
        repo.check_root_not_expired()
        repo.unlock("targets", "snapshot", "timestamp")
        old_ids = list(repo.role_keys(role)[0])
        k = keystore.new_key(model_key_name(role), key_type, rotation=True)
        new_keys.append(k)
        with repo.edit_targets() as targets:
            for keyid in old_ids:
                targets.revoke_key(keyid, role)
            targets.add_key(k.public, role)
        repo.signer_override[role] = [k.signer()]
        with repo.edit_targets(role):
            pass
        repo.publish_top()

    repo.before_commit(lambda: [w for k in new_keys for w in keystore.key_files(k)])
    repo.retire_after_commit(old_ids)
    repo.commit(f"rotation of {role}")
    root_version = repo.md("root").signed.version
    return RotationResult(role, root_version, old_ids, [k.keyid for k in new_keys])
