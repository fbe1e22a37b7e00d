"""Issue 12's heap budget, held in CI: the whole security half of the agent (monitor
at steady state, the signed-commands inbox after one command turn, the egress guard)
keeps at most 24 KiB more live heap than the same agent without it, measured as
bench/heap_security.py measures it (.mpy build, MicroPython VM, after one update
check's code was loaded and released). The figure is deterministic for one build;
it was 31.7 KiB before the SHA-512 kernel was kept across imports and the resident
modules were trimmed (README "Security monitoring")."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUDGET = 24 * 1024


def _bench():
    spec = importlib.util.spec_from_file_location("heap_security", REPO / "bench" / "heap_security.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_security_half_stays_within_24_kib_of_live_heap():
    r = _bench().measure()
    whole = r["total"] + r["netguard"]
    assert r["scan_ok"] and r["head"] >= 21, r  # the steady state it claims: a scan done, events logged
    assert whole <= BUDGET, f"security half {whole / 1024:.1f} KiB > 24 KiB: {r}"
    print(f"security half: {whole / 1024:.1f} KiB of 24")
