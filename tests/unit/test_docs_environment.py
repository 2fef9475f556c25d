"""docs/environment.md lists exactly the variables the code gives builds, hooks and instances.

The names are read from the code that sets them (the engine's Run.build_environ, environ, _hook and _spec; the
agent's build_env; the scrub allow-list every child starts from), not from a copy here, so renaming,
adding or dropping a variable without the docs fails this test.
If one of those functions moves, point SOURCES at its new home.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import shipyard
from shipyard.secrets.redact import REDACT_ENV

SRC = Path(shipyard.__file__).resolve().parent
DOC = SRC.parents[1] / "docs" / "environment.md"
NAME = re.compile(r"^[A-Z][A-Z0-9_]*\*?$")       # `LC_*`: a pattern of the scrub allow-list
# (file, class or None, function or module-level name) -> the variable names it sets
BASE = ("secrets/scrub.py", None, "BASE")       # what every child keeps of the user's environment
BUILD = ("engine/run.py", "Run", "build_environ")   # also what a release is keyed by
SOURCES = {
    "build": [BASE, BUILD, ("releases/store.py", "ReleaseStore", "prepare")],
    "hooks": [BASE, BUILD, ("engine/run.py", "Run", "environ"), ("engine/run.py", "Run", "_hook")],
    "instances": [BASE, BUILD, ("engine/run.py", "Run", "environ"), ("engine/run.py", "Run", "_spec"),
                  ("agent/spec.py", None, "build_env")],
}
NOT_VARIABLES = {REDACT_ENV}        # taken out of the environment by the agent before the app starts


def _find(tree: ast.Module, cls: str | None, name: str) -> ast.AST:
    scope: list[ast.stmt] = tree.body
    if cls is not None:
        scope = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
    for node in scope:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return node
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node
    raise AssertionError(f"{cls + '.' if cls else ''}{name} not found: update SOURCES in this test")


def names_in(node: ast.AST) -> set[str]:
    """Environment-variable names in `node`: string constants and keyword arguments (`env.update(PORT=...)`)."""
    found = {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    found |= {k.arg for n in ast.walk(node) if isinstance(n, ast.Call) for k in n.keywords if k.arg}
    return {name for name in found if NAME.match(name)} - NOT_VARIABLES


def code_names(context: str) -> set[str]:
    out: set[str] = set()
    for file, cls, name in SOURCES[context]:
        tree = ast.parse((SRC / file).read_text(encoding="utf-8"))
        out |= names_in(_find(tree, cls, name))
    return out


def documented() -> dict[str, set[str]]:
    rows = [line for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("| `")]
    out: dict[str, set[str]] = {"build": set(), "hooks": set(), "instances": set()}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        name = cells[0].strip("`")
        for context, mark in zip(("build", "hooks", "instances"), cells[1:4], strict=True):
            if mark == "✓":
                out[context].add(name)
    return out


def test_the_table_is_read() -> None:
    docs = documented()
    assert "SHIPYARD_REVISION" in docs["build"] and "PORT" in docs["instances"], docs


def test_documented_variables_match_the_code() -> None:
    docs = documented()
    for context in SOURCES:
        code = code_names(context)
        assert docs[context] == code, (
            f"docs/environment.md and the code disagree on what {context} get: "
            f"only in the docs {sorted(docs[context] - code)}, only in the code {sorted(code - docs[context])}")
