"""Per-device-model delegated targets roles.

Each model (``pump-v2``, ``monitor-v1``...) is a delegated role of the
top-level targets role, with its own key (``model-<model>``), threshold 1,
``paths: ["<model>/*"]`` and ``terminating: true``. A key that signs pump
releases therefore cannot sign anything a client would accept for a monitor.
Models are added explicitly (``medsentry keys add-model MODEL``); publishing
for a model that has no role is an error (:class:`UnknownModel`).
"""
from __future__ import annotations

from tuf.api.metadata import DelegatedRole, Delegations

from ..errors import ModelExists, UnknownModel
from ..keys import model_key_name
from ..package import check_model
from ..session import Session


def model_paths(model: str) -> list[str]:
    return [f"{model}/*"]


def require_model(session: Session, model: str) -> None:
    if model not in session.repo.models():
        known = ", ".join(session.repo.models()) or "none yet"
        raise UnknownModel(
            f"unknown device model {model!r} (known: {known}); "
            f"add it with `medsentry keys add-model {model}`"
        )


def add_model(session: Session, model: str, key_type: str | None = None) -> str:
    """Create the model's key and delegated role (version 1, no targets yet),
    then new targets, snapshot and timestamp. Returns the new key id."""
    check_model(model)
    repo = session.repo
    if model in repo.models():
        raise ModelExists(f"model {model!r} already has a role")
    repo.check_root_not_expired()
    repo.unlock("targets", "snapshot", "timestamp")
    key = session.keystore.new_key(model_key_name(model), key_type or session.config.key_type)
    with repo.edit_targets() as targets:
        if targets.delegations is None:
            targets.delegations = Delegations(keys={}, roles={})
        targets.delegations.roles[model] = DelegatedRole(
            name=model, keyids=[], threshold=1, terminating=True, paths=model_paths(model)
        )
        targets.add_key(key.public, model)
    repo.signer_override[model] = [key.signer()]
    with repo.edit_targets(model):
        pass
    repo.publish_top()

    repo.before_commit(lambda: session.keystore.key_files(key))
    repo.commit(f"add-model {model}")
    return key.keyid
