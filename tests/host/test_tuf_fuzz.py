"""Hypothesis fuzzing of the device TUF parser and trusted set (on CPython).

Malformed metadata - random bytes, random JSON, and golden python-tuf
metadata with random structural mutations - must give a RepositoryError (or
be accepted when the mutation left it valid), never another exception, and
never hang (Hypothesis deadline). Path-pattern matching is compared with
python-tuf's own implementation.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tuf.api.metadata import DelegatedRole

from updater.tuf import envelope, metadata as md, patterns
from updater.tuf.errors import RepositoryError
from updater.tuf.trusted_set import TrustedSet

DATA = Path(__file__).resolve().parents[1] / "device" / "data" / "tuf"
VEC = json.loads((DATA / "vectors.json").read_bytes())
NOW = VEC["ref_time"]
GOLDEN = {
    "root": json.loads((DATA / "root2.json").read_bytes()),
    "timestamp": json.loads((DATA / "timestamp2.json").read_bytes()),
    "snapshot": json.loads((DATA / "snapshot2.json").read_bytes()),
    "targets": json.loads((DATA / "targets3.json").read_bytes()),
}
SETTINGS = settings(max_examples=250, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True), st.text(max_size=20)
)
json_value = st.recursive(
    json_scalar,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
    max_leaves=12,
)


def _paths(obj, prefix=()):
    """Every (container path) in a JSON document."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _mutate(doc, data):
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        path = data.draw(st.sampled_from(paths))
        if not path:
            continue
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        key = path[-1]
        action = data.draw(st.sampled_from(["replace", "delete", "add", "dup_list"]))
        if action == "replace":
            parent[key] = data.draw(json_value)
        elif action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(st.text(max_size=6))] = data.draw(json_value)
        elif action == "dup_list" and isinstance(parent[key], list) and parent[key]:
            parent[key].append(copy.deepcopy(parent[key][0]))
    return doc


def _clean(fn, *args):
    try:
        fn(*args)
    except RepositoryError:
        pass


@SETTINGS
@given(st.binary(max_size=400), st.sampled_from(md.TOP_LEVEL_ROLES))
def test_random_bytes_parse_cleanly(data, role):
    _clean(envelope.load, data, role)


@SETTINGS
@given(json_value, st.sampled_from(md.TOP_LEVEL_ROLES))
def test_random_json_parses_cleanly(value, role):
    _clean(envelope.load, json.dumps(value).encode(), role)
    _clean(envelope.load, json.dumps({"signed": value, "signatures": []}).encode(), role)


@SETTINGS
@given(st.sampled_from(sorted(GOLDEN)), st.data())
def test_mutated_golden_metadata(role, data):
    doc = _mutate(GOLDEN[role], data)
    raw = json.dumps(doc).encode()
    _clean(envelope.load, raw, role)
    # and through the trusted set at the step where it would be used
    root1 = (DATA / "root1.json").read_bytes()
    ts = TrustedSet(root1, NOW)
    try:
        if role == "root":
            ts.update_root(raw)
        elif role == "timestamp":
            ts.update_timestamp(raw)
        else:
            ts.update_timestamp((DATA / ("timestamp3_nohash.json" if role == "targets" else "timestamp2_nohash.json")).read_bytes())
            if role == "snapshot":
                ts.update_snapshot(raw)
            else:
                ts.update_snapshot((DATA / "snapshot3_nohash.json").read_bytes())
                ts.update_targets(raw)
    except RepositoryError:
        pass


@SETTINGS
@given(st.binary(max_size=300))
def test_trusted_set_random_root_bytes(data):
    try:
        TrustedSet(data, NOW)
    except RepositoryError:
        pass


_glob_chars = st.sampled_from(list("ab*?[]!-/.c"))


@settings(max_examples=400, deadline=1000)
@given(st.text(_glob_chars, max_size=10), st.text(st.sampled_from(list("ab/-.c]![")), max_size=10))
def test_path_patterns_agree_with_python_tuf(pattern, path):
    role = DelegatedRole("r", [], 1, False, [pattern])
    assert patterns.path_matches(path, pattern) == role.is_delegated_path(path), (path, pattern)


@settings(max_examples=20, deadline=3000)
@given(st.integers(min_value=200, max_value=4000))
def test_long_glob_does_not_blow_up(n):
    # '*a*a*a...' against 'aaaa...b' is exponential for naive backtracking
    pattern = "*a" * 50 + "*c"
    path = "a" * n + "b"
    assert patterns.fnmatchcase(path, pattern) is False
