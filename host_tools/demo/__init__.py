"""The demo (`make demo`): simulated boards end to end.

core.py runs the stages in order over a context.DemoContext; each stage module adds its section to
demo-out/summary.json: boards.py (boot and watch), telemetry.py (sealed vitals
into the collector), updates.py (signed releases, A/B updates, deferral, rollback).
"""
from host_tools.demo.core import run_demo

__all__ = ["run_demo"]
