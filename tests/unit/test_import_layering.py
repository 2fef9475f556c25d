"""No import circles: every `import` in the package (including ones inside functions and under
TYPE_CHECKING, which only hide a circle) forms a graph without cycles.

A circle means two modules cannot be understood, tested or changed apart; DESIGN.md calls them a smell.
The layering this keeps: cli -> fleet -> engine -> (health, releases, monitoring, store) -> domain.
"""

from __future__ import annotations

import ast
from pathlib import Path

import shipyard

ROOT = Path(shipyard.__file__).resolve().parent
NOT_YET: tuple[str, ...] = ()        # packages allowed to keep a circle while it is being untangled


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in ROOT.rglob("*.py"):
        parts = ("shipyard", *path.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the shipyard modules it imports anywhere in its text."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    if full in mods:
                        graph[name].add(full)
                    elif base in mods:
                        graph[name].add(base)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_the_finder_sees_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    graph = import_graph()
    assert "shipyard.engine.run" in graph["shipyard.engine.deployer"]        # the graph is really read
    bad = [c for c in cycles(graph) if not all(m.startswith(NOT_YET) for m in c)]
    assert bad == [], f"import circles: {bad}"


def test_engine_analysis_does_not_know_the_run() -> None:
    graph = import_graph()
    assert "shipyard.engine.run" not in graph["shipyard.engine.analysis"]
    assert "shipyard.fleet.rollback" not in graph["shipyard.fleet.promote"]
    assert "shipyard.fleet.promote" not in graph["shipyard.fleet.rollback"]
