"""The built-in router's modules form layers: each imports only from layers below it (TYPE_CHECKING
imports included), so there is no import circle to untangle again."""

from __future__ import annotations

import ast
from pathlib import Path

import shipyard.proxy

PACKAGE = Path(shipyard.proxy.__file__).parent
LAYERS = [
    {"options", "metrics", "wire", "websocket"},  # plain data and bytes, no proxy imports
    {"backends"},  # backends, their live state, the balancer
    {"exchange"},  # one request/response, and the faces the sides show each other
    {"tunnel"},  # upgraded connections
    {"upstream", "client"},  # the two sides of the proxy; they never import each other
    {"drain"},
    {"server"},  # the listener that ties it together
    {"observe"},  # a router's numbers summed over the processes serving it
    # The process level (routers in their own processes, under a keeper holding their sockets):
    {"errors", "paths", "table", "channel", "children", "listeners"},  # no HTTP, no proxy imports
    {"registry", "keeperctl", "workerpool"},  # a process's routers and table; a keeper; a generation's workers
    {"admin", "routerctl", "keeper", "worker"},  # admin API and client; the keeper's loop; a worker process
    {"process", "keeperd"},  # the two entry points: a router generation, the keeper daemon
]


def sibling_imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import wire
                found |= {a.name for a in node.names}
            elif node.level == 0 and (node.module or "").startswith("shipyard.proxy."):
                found.add((node.module or "").split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("shipyard.proxy.")}
    return found


def test_every_module_has_a_layer() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set().union(*LAYERS)


def test_modules_import_only_from_lower_layers() -> None:
    rank = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    wrong = sorted(
        f"{module} imports {dep}"
        for module in rank
        for dep in sibling_imports(module)
        if rank.get(dep, len(LAYERS)) >= rank[module]
    )
    assert wrong == []
