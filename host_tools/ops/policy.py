"""Publish the command policy as a signed TUF target ``<model>/command-policy.json``
in the model's delegated role (like the recall list), so that adding, rotating or
revoking an operator rides on TUF's guarantees (signatures, versions, expiry)."""
from __future__ import annotations

from host_tools.ops.keys import OpsKeyring
from host_tools.release.package import canonical_json
from host_tools.release.roles.models import require_model
from host_tools.release.session import Session

POLICY_NAME = "command-policy.json"


def policy_target_path(model: str) -> str:
    return f"{model}/{POLICY_NAME}"


def publish_policy(session: Session, ring: OpsKeyring, models: list[str] | None = None) -> list[tuple[str, int]]:
    """Publish the current policy for `models` (default: every model); returns
    (model, policy version) pairs."""
    repo = session.repo
    repo.check_root_not_expired()
    models = list(models or repo.models())
    for m in models:
        require_model(session, m)
    repo.unlock(*models, "snapshot", "timestamp")
    out = []
    for m in models:
        doc = ring.policy(m)
        tf = repo.stage_target(policy_target_path(m), canonical_json(doc) + b"\n",
                               {"type": "command-policy", "model": m, "version": doc["version"]})
        with repo.edit_targets(m) as role:
            role.targets[tf.path] = tf
        out.append((m, doc["version"]))
    repo.publish_top()
    repo.commit("command policy for " + ", ".join(models))
    return out
