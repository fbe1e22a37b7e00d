"""Static import graph of the device packages (issue 9 item 1, DESIGN rule
10): no import cycle among agent/, updater/, board/ modules, the updater
never imports the agent, board never imports either, and no device module
imports host code. Every import statement counts, function-level ones too."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEVICE = ("agent", "updater", "board")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in DEVICE:
        for p in (REPO / pkg).rglob("*.py"):
            if "__pycache__" not in p.parts and p != REPO / pkg / "manifest.py":
                out[_module_name(p)] = p
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Names of modules `path` imports (resolved to the longest known module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [node.module + "." + a.name for a in node.names]
        for n in names:
            found.add(n)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    g: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for imp in _imports(path, modules):
            if imp in modules:
                edges.add(imp)
            elif imp.split(".")[0] in DEVICE + ("host_tools", "tests"):
                # "from pkg import name" where name is not a module
                parent = imp.rpartition(".")[0]
                edges.add(parent if parent in modules else imp)
        edges.discard(name)
        g[name] = edges
    return g


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    # Tarjan's strongly connected components; any component > 1 is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_among_device_modules():
    assert _cycles(_graph()) == []


def test_dependencies_point_one_way():
    g = _graph()
    assert "updater.install.manifest" in g  # the package-manifest parser is a module, not a manifest
    bad = []
    for mod, edges in g.items():
        top = mod.split(".")[0]
        for e in edges:
            dep = e.split(".")[0]
            if dep in ("host_tools", "tests"):
                bad.append((mod, e))
            elif top == "updater" and dep == "agent":
                bad.append((mod, e))
            elif top == "board" and dep in ("agent", "updater"):
                bad.append((mod, e))
    assert bad == []


def test_the_checker_sees_a_cycle_and_a_wrong_way_import():
    # The graph code on a hand-made graph: it must report what it guards.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


# Host modules that import device code, and what: the board harness shares the
# simulated board's layout and codes with board/sim; the fleet view and the demo
# compute a device's rollout bucket with the device's own pure function, so the
# host and the device can never disagree about who is in a stage.
HOST_TO_DEVICE = {
    "host_tools/sim/": ("board.sim",),
    "host_tools/fleet/status.py": ("updater.install.policy",),
    "host_tools/fleet/rollout_health.py": ("updater.install.policy",),
    "host_tools/demo/rollout.py": ("updater.install",),
}


def _host_imports_of_device_code() -> list[tuple[str, str]]:
    out = []
    for p in sorted((REPO / "host_tools").rglob("*.py")):
        rel = str(p.relative_to(REPO))
        for node in ast.walk(ast.parse(p.read_text(), rel)):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            out += [(rel, n) for n in names if n.split(".")[0] in DEVICE]
    return out


def _allowed(rel: str, module: str) -> bool:
    for where, mods in HOST_TO_DEVICE.items():
        if rel == where or (where.endswith("/") and rel.startswith(where)):
            if any(module == m or module.startswith(m + ".") for m in mods):
                return True
    return False


def test_host_code_imports_device_code_only_where_the_readme_says():
    found = _host_imports_of_device_code()
    assert found, "the scan found no host -> device import at all (the board harness has some)"
    assert [f for f in found if not _allowed(*f)] == []
    assert not _allowed("host_tools/fleet/report.py", "updater.install.policy")
    assert not _allowed("host_tools/sim/boards.py", "agent.main")
