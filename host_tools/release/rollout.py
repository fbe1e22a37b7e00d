"""Staged rollout with automatic halt: ``release rollout`` and ``rollout status|advance|halt``.

A stage is the signed custom field ``rollout_percent`` of the release's package
target (0..100). Publishing a stage re-signs the model's role (then snapshot and
timestamp) through the journaled commit, like any other change; devices only
trust the field because it is signed (TUF refuses a role changed without its
key). Each device compares its own bucket (``updater.install.policy``) with it.

The plan - stages, thresholds, where the rollout is, its history - is the local
record ``<workdir>/release/rollouts.json``, landed with the same commit::

    {"rollouts": {"pump-v2/1.2.0": {"model", "version", "stages": [10, 50, 100],
        "stage": 0, "percent": 10, "state": "running" | "halted" | "complete",
        "halt_on_rollback": 0.2, "min_confirmed": 1, "manifest_sha256",
        "history": [{"at", "percent", "why"}]}}}

``advance`` reads the stage's health from ``fleet.db`` (host_tools.fleet.rollout_health):
a rollback rate above the threshold halts the rollout (stage 0, or a recall);
enough confirmed devices in the stage open the next one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuf.api.metadata import TargetFile

from .errors import ConfigError, UnknownRelease
from .fsutil import write_atomic
from .publish import package_target_path
from .session import Session


def record_path(session: Session) -> Path:
    return session.layout.workdir / "release" / "rollouts.json"


def load_plans(workdir: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(workdir) / "release" / "rollouts.json"
    try:
        return json.loads(path.read_text())["rollouts"]
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a rollout record: {exc}") from None


def parse_stages(text: str) -> list[int]:
    try:
        stages = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--stages {text!r}: give percentages like 10,50,100") from None
    if not stages or any(not 0 < s <= 100 for s in stages) or stages != sorted(set(stages)) or stages[-1] != 100:
        raise ConfigError(f"--stages {text!r}: increasing percentages in 1..100, ending with 100")
    return stages


def _record(session: Session, plan: dict[str, Any]) -> bytes:
    """The record with `plan` in it (to land with a commit, or on its own)."""
    plans = load_plans(session.layout.workdir)
    plans[f"{plan['model']}/{plan['version']}"] = plan
    return (json.dumps({"rollouts": plans}, indent=2, sort_keys=True) + "\n").encode()


def _save(session: Session, plan: dict[str, Any]) -> dict[str, Any]:
    """A change of the plan only (no signed change): the record alone, atomically."""
    write_atomic(record_path(session), _record(session, plan))
    return plan


def _event(session: Session, plan: dict[str, Any], percent: int, why: str) -> list[dict[str, Any]]:
    at = session.repo.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return [*plan.get("history", []), {"at": at, "percent": percent, "why": why}]


def _target(session: Session, model: str, version: str) -> TargetFile:
    tf = session.repo.md(model).signed.targets.get(package_target_path(model, version))
    if tf is None:
        raise UnknownRelease(f"{model} {version} is not published (or was recalled)")
    return tf


def plan_of(session: Session, model: str, version: str) -> dict[str, Any]:
    plan = load_plans(session.layout.workdir).get(f"{model}/{version}")
    if plan is None:
        raise UnknownRelease(f"no rollout of {model} {version}: start one with `medsentry release rollout`")
    return plan


def _publish(session: Session, plan: dict[str, Any], percent: int, state: str, why: str) -> dict[str, Any]:
    """Re-sign the release's target with `percent`, land it with the record."""
    repo = session.repo
    repo.check_root_not_expired()
    model, version = plan["model"], plan["version"]
    repo.unlock(model, "snapshot", "timestamp")
    tf = _target(session, model, version)
    with repo.edit_targets(model) as role:
        t = role.targets[tf.path]
        t.unrecognized_fields["custom"] = dict(t.unrecognized_fields["custom"], rollout_percent=percent)
    repo.publish_top()
    plan = dict(plan, percent=percent, state=state, history=_event(session, plan, percent, why))
    repo.also_write(record_path(session), _record(session, plan))
    repo.commit(f"rollout of {model} {version}: {percent} %")
    return plan


def start_rollout(session: Session, model: str, version: str, stages: list[int],
                  halt_on_rollback: float = 0.2, min_confirmed: int = 1) -> dict[str, Any]:
    if not 0.0 <= halt_on_rollback <= 1.0:
        raise ConfigError(f"--halt-on-rollback {halt_on_rollback}: a rate between 0 and 1")
    if min_confirmed < 1:
        raise ConfigError("--min-confirmed must be at least 1")
    tf = _target(session, model, version)
    old = load_plans(session.layout.workdir).get(f"{model}/{version}")
    if old is not None and old["state"] == "running":
        raise ConfigError(f"a rollout of {model} {version} is already running (stage {old['percent']} %)")
    plan = {"model": model, "version": version, "stages": stages, "stage": 0, "halt_on_rollback": halt_on_rollback,
            "min_confirmed": min_confirmed, "manifest_sha256": tf.custom["manifest_sha256"], "history": []}
    return _publish(session, plan, stages[0], "running", "rollout started")


def halt_rollout(session: Session, model: str, version: str, why: str, recall: bool = False) -> dict[str, Any]:
    """Stage 0 (no further device takes the release), or a recall."""
    plan = plan_of(session, model, version)
    if recall:
        from .recall import recall_release

        recall_release(session, version, why, model)
        return _save(session, dict(plan, percent=0, state="halted", history=_event(session, plan, 0, f"recalled: {why}")))
    return _publish(session, plan, 0, "halted", why)


def advance_rollout(session: Session, model: str, version: str, force: bool = False,
                    fleet_dir: Path | None = None) -> tuple[str, str, dict[str, Any]]:
    """Evaluate the current stage from fleet.db and act: ("halted" | "advanced" |
    "complete" | "waiting" | <state>, why, plan). `fleet_dir`: where fleet.db and
    the PKI live when not in the release work directory (the demo)."""
    from host_tools.fleet.rollout_health import decide, stage_health

    plan = plan_of(session, model, version)
    if plan["state"] != "running":
        return plan["state"], f"the rollout is {plan['state']}", plan
    h = stage_health(fleet_dir or session.layout.workdir, model, version, plan["manifest_sha256"], plan["percent"])
    action, why = decide(h, plan["halt_on_rollback"], plan["min_confirmed"])
    if action == "halt":
        return "halted", why, _publish(session, plan, 0, "halted", f"automatic halt: {why}")
    if action == "wait" and not force:
        return "waiting", why, plan
    if force and action == "wait":
        why = f"forced by the operator ({why})"
    nxt = plan["stage"] + 1
    if nxt >= len(plan["stages"]):
        return "complete", why, _save(session, dict(plan, state="complete",
                                                    history=_event(session, plan, plan["percent"], why)))
    plan = dict(plan, stage=nxt)
    return "advanced", why, _publish(session, plan, plan["stages"][nxt], "running", why)
