"""Issue 9 item 7: no import cycle among the collector's modules (db and ingest used
to import each other). Reads the sources with ast, so a lazy import inside a
function counts too."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "host_tools.collector"
DIR = Path(__file__).resolve().parents[2] / "host_tools" / "collector"


def imports_of(path: Path) -> set[str]:
    """Sibling modules of the collector that ``path`` imports (anywhere in the file)."""
    siblings = {p.stem for p in DIR.glob("*.py")}
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                names = [node.module] if node.module else [a.name for a in node.names]
            elif node.module and node.module.startswith(PACKAGE + "."):
                names = [node.module[len(PACKAGE) + 1:]]
            elif node.module == PACKAGE:
                names = [a.name for a in node.names]
            else:
                continue
            out |= {n.split(".")[0] for n in names if n and n.split(".")[0] in siblings}
        elif isinstance(node, ast.Import):
            out |= {a.name[len(PACKAGE) + 1:].split(".")[0] for a in node.names
                    if a.name.startswith(PACKAGE + ".")}
    return out - {"__init__"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (cyc := visit(m)):
                return cyc
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cyc := visit(n)):
            return cyc
    return None


def test_no_import_cycle_among_collector_modules():
    graph = {p.stem: imports_of(p) for p in DIR.glob("*.py") if p.stem != "__init__"}
    assert graph["ingest"] >= {"db", "outcomes"}  # the reader sees real edges
    assert find_cycle(graph) is None, find_cycle(graph)


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"db": {"ingest"}, "ingest": {"db"}}) == ["db", "ingest", "db"]
