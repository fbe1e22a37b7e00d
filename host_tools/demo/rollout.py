"""Demo stage: two staged rollouts on the pumps (after stage_updates).

pump-v2 1.3.0 is published held and rolled out in two stages (the first
holds one pump, 100): each stage is
signed into the release's target, each pump decides from its own bucket, and the
stage advances when the pumps in it confirmed (from fleet.db). pump-v2 1.4.0
fails its health check: the pump(s) in the first stage it reaches roll back and
the rollout halts by itself (stage 0 signed). Writes `rollouts` into the summary.
"""
from __future__ import annotations

import time

from host_tools.demo.context import DemoContext
from host_tools.demo.updates import PASSPHRASES, bad_selftest, publish
from host_tools.release.rollout import advance_rollout, start_rollout
from host_tools.release.session import open_session
from updater.install import policy

MODEL = "pump-v2"
PUMPS = ("pump-1", "pump-2")
ROLLOUT_TIMEOUT = 240.0


def _roll(ctx: DemoContext, version: str, counter: int, overrides: dict[str, bytes], until: str) -> dict:
    rel = publish(ctx, MODEL, version, counter, overrides, held=True)
    work = ctx.shared["release_work"]
    with open_session(work, PASSPHRASES) as s:
        sha = s.repo.md(MODEL).signed.targets[rel.target].custom["manifest_sha256"]
    # Two pumps only: the first stage is sized so that it holds one of them.
    buckets = {p: policy.rollout_bucket(p, sha) for p in PUMPS}
    stages = sorted({min(buckets.values()) + 1, 100})
    with open_session(work, PASSPHRASES) as s:
        plan = start_rollout(s, MODEL, version, stages, halt_on_rollback=0.2)
    ctx.console.print(f"[bold]rollout[/] {MODEL} {version} ({rel.target}): stages {','.join(map(str, stages))}; "
                      "buckets " + ", ".join(f"{p}={b}" for p, b in buckets.items()))
    collector = ctx.shared["telemetry"]["collector"]
    result, end = "waiting", time.monotonic() + ROLLOUT_TIMEOUT
    last = None
    while result not in ("complete", "halted") and time.monotonic() < end:
        time.sleep(2.0)
        collector.flush()
        with open_session(work, PASSPHRASES) as s:
            result, why, plan = advance_rollout(s, MODEL, version, fleet_dir=ctx.workdir)
        if (result, plan["percent"]) != last:
            ctx.console.print(f"  {version}: {result} at {plan['percent']} %: {why}", markup=False)
            last = (result, plan["percent"])
    if result not in ("complete", "halted"):
        ctx.console.print(f"  {version}: not {until} after {ROLLOUT_TIMEOUT:g} s (state {plan['state']})")
    return {"state": plan["state"], "expected": until, "percent": plan["percent"], "buckets": buckets,
            "history": plan["history"]}


def stage_rollouts(ctx: DemoContext) -> None:
    if "telemetry" not in ctx.shared:
        return  # the rollout reads device reports from the collector's fleet.db
    ctx.summary["rollouts"] = {
        # (1.2.0, counter 3, is the commands stage's egress release)
        f"{MODEL} 1.3.0": _roll(ctx, "1.3.0", 4, {"agent/release.txt": b"1.3.0: staged\n"}, "complete"),
        f"{MODEL} 1.4.0": _roll(ctx, "1.4.0", 5, {"agent/selftest.py": bad_selftest()}, "halted"),
    }
