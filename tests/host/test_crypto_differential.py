"""Differential test of the device crypto against cryptography / hashlib:
>= 1,000 generated cases per algorithm (ed25519, ECDSA P-256, SHA-512), see
crypto_diff_cases.py, run as ONE batch per runtime and SHA-512 backend:
CPython (pure), MicroPython with the viper compression, MicroPython forced to
the pure fallback (sha512.use_viper(False))."""
from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

import pytest

from host_tools import mpvm

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

import crypto_diff_cases  # noqa: E402

RUNNER = HERE / "crypto_diff_vm.py"


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    path = tmp_path_factory.mktemp("crypto-diff") / "cases.jsonl"
    return path, crypto_diff_cases.write_cases(path)


def test_case_mix_covers_the_issue(cases):
    _, cs = cases
    count = collections.Counter(c["alg"] for c in cs)
    assert min(count.values()) >= 1000, count
    kinds = {(c["alg"], c["kind"].split(" ")[0], c["expect"]) for c in cs}
    for want in [("ed25519", "valid", "valid"), ("ed25519", "S", "invalid"), ("ed25519", "small-order", "unsupported"),
                 ("ed25519", "non-canonical", "invalid"), ("ed25519", "non-canonical", "unsupported"),
                 ("ed25519", "mixed-order", "valid"), ("ed25519", "mixed-order", "invalid"),
                 ("ed25519", "key", "unsupported"), ("ed25519", "message", "invalid"),
                 ("ecdsa", "valid", "valid"), ("ecdsa", "high", "valid"), ("ecdsa", "key", "unsupported"),
                 ("ecdsa", "s", "invalid"), ("ecdsa", "truncated", "invalid")]:
        assert want in kinds, want


@pytest.mark.parametrize("runtime,mode", [("cpython", "pure"), ("micropython", "viper"), ("micropython", "pure")])
def test_device_agrees_with_cryptography(cases, runtime, mode):
    path, cs = cases
    proc = mpvm.run_on(runtime, RUNNER, str(path), mode, paths=[REPO], heap="256k", timeout=600)
    answers = {}
    backend = None
    for line in proc.stdout.splitlines():
        if line.startswith("@@backend "):
            backend = line.split()[1]
        elif line.startswith("@@") and not line.startswith("@@done"):
            i, ans = line[2:].split(" ", 1)
            answers[int(i)] = ans
    assert proc.returncode == 0 and "@@done %d" % len(cs) in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert backend == mode, backend  # the VM really ran the viper code (or the forced fallback)
    wrong = [(c["alg"], c["kind"], c["expect"], answers.get(i)) for i, c in enumerate(cs) if answers.get(i) != c["expect"]]
    assert not wrong, json.dumps(wrong[:20], indent=1) + "\n%d wrong of %d" % (len(wrong), len(cs))
