"""`medsentry release rollout` and `medsentry rollout status|advance|halt|watch`."""
from __future__ import annotations

import json
import time

import click

from host_tools.cli.keys import ReleaseGroup, no_prompt_option, passphrases, workdir


@click.command("rollout")
@click.argument("model")
@click.argument("version")
@click.option("--stages", default="10,50,100", show_default=True, help="Percentages of the fleet, ending with 100.")
@click.option("--halt-on-rollback", type=float, default=0.2, show_default=True,
              help="Halt (stage 0) when rolled back / finished devices is above this rate.")
@click.option("--min-confirmed", type=int, default=1, show_default=True,
              help="Devices of a stage that must confirm before the next stage opens.")
@no_prompt_option
@click.pass_context
def start_cmd(ctx, model, version, stages, halt_on_rollback, min_confirmed, no_prompt) -> None:
    """Start a staged rollout of MODEL VERSION: sign its first stage into the release's target."""
    from host_tools.release.rollout import parse_stages, start_rollout
    from host_tools.release.session import open_session

    plan_stages = parse_stages(stages)
    with open_session(workdir(ctx), passphrases(no_prompt)) as s:
        plan = start_rollout(s, model, version, plan_stages, halt_on_rollback, min_confirmed)
    click.echo(f"rollout of {model} {version}: stage {plan['percent']} % signed and published "
               f"(stages {', '.join(map(str, plan['stages']))}; halts above {halt_on_rollback:.0%} rollbacks)")


@click.group(cls=ReleaseGroup, name="rollout")
def cli() -> None:
    """Staged rollouts: status, advance (or halt automatically), halt, watch."""


def _line(plan: dict, health: dict | None) -> str:
    out = (f"{plan['model']} {plan['version']}: {plan['state']}, stage {plan['stage'] + 1}/{len(plan['stages'])} "
           f"at {plan['percent']} % (halt above {plan['halt_on_rollback']:.0%} rollbacks)")
    if health is not None:
        out += (f"\n  in stage: {len(health['in_stage'])} device(s); confirmed {len(health['confirmed'])}, "
                f"rolled back {len(health['rolled_back'])} (rate {health['rollback_rate']:.0%})")
    last = plan["history"][-1] if plan.get("history") else None
    if last:
        out += f"\n  last: {last['at']} {last['percent']} %: {last['why']}"
    return out


@cli.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status_cmd(ctx, as_json) -> None:
    """Every rollout: stage, state, devices in the stage and their health."""
    from host_tools.fleet.rollout_health import stage_health
    from host_tools.release.rollout import load_plans

    out = []
    for plan in load_plans(workdir(ctx)).values():
        h = stage_health(workdir(ctx), plan["model"], plan["version"], plan["manifest_sha256"], plan["percent"])
        out.append({"plan": plan, "health": h.as_dict()})
    if as_json:
        click.echo(json.dumps(out, indent=1, sort_keys=True))
    elif not out:
        click.echo("no rollouts (start one with `medsentry release rollout MODEL VERSION`)")
    else:
        click.echo("\n".join(_line(o["plan"], o["health"]) for o in out))


def _advance(ctx, model, version, force, no_prompt) -> str:
    from host_tools.release.rollout import advance_rollout
    from host_tools.release.session import open_session

    with open_session(workdir(ctx), passphrases(no_prompt)) as s:
        result, why, plan = advance_rollout(s, model, version, force)
    click.echo(f"{model} {version}: {result} ({why}); now {plan['percent']} %, {plan['state']}")
    return result


@cli.command("advance")
@click.argument("model")
@click.argument("version")
@click.option("--force", is_flag=True, help="Open the next stage even if the current one has not confirmed yet.")
@no_prompt_option
@click.pass_context
def advance_cmd(ctx, model, version, force, no_prompt) -> None:
    """Check the stage's health in fleet.db: halt above the rollback threshold, else open the next stage."""
    _advance(ctx, model, version, force, no_prompt)


@cli.command("watch")
@click.argument("model")
@click.argument("version")
@click.option("--every", type=float, default=30.0, show_default=True, help="Seconds between two checks.")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="Give up after this many seconds.")
@no_prompt_option
@click.pass_context
def watch_cmd(ctx, model, version, every, timeout, no_prompt) -> None:
    """`advance` every --every seconds until the rollout completes or halts."""
    deadline = time.monotonic() + timeout
    while True:
        result = _advance(ctx, model, version, False, no_prompt)
        if result in ("complete", "halted"):
            return
        if time.monotonic() + every > deadline:
            raise click.ClickException(f"rollout of {model} {version} not finished after {timeout:g} s")
        time.sleep(every)


@cli.command("halt")
@click.argument("model")
@click.argument("version")
@click.option("--reason", required=True)
@click.option("--recall", is_flag=True, help="Recall the release instead of publishing stage 0.")
@no_prompt_option
@click.pass_context
def halt_cmd(ctx, model, version, reason, recall, no_prompt) -> None:
    """Stop the rollout now: stage 0 (no further device takes it), or a recall."""
    from host_tools.release.rollout import halt_rollout
    from host_tools.release.session import open_session

    with open_session(workdir(ctx), passphrases(no_prompt)) as s:
        halt_rollout(s, model, version, reason, recall)
    click.echo(f"{model} {version}: halted ({'recalled' if recall else 'stage 0'}): {reason}")
