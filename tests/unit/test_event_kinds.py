"""Meta-tests: one registry of event kinds (domain/events.py) that the code, the severities and the docs
all agree with.

The emitting calls are found by reading the source (ast): `<x>.event(kind, ...)` (the Journal) and
`record_event(session, notifications, kind, ...)` reach the notification routes; `add_event(session,
kind, ...)` and `audit(store, kind, ...)` only record. A kind built with an f-string (`f"alarm.{state}"`)
counts for every registered kind with its literal prefix, and the states it is built from are checked
against the registry where the code enumerates them.
"""

from __future__ import annotations

import ast
from pathlib import Path

from shipyard.domain.events import KINDS
from shipyard.monitoring.alarms import AlarmState
from shipyard.notify import kinds
from shipyard.notify.message import severity_of

SRC = Path(__file__).resolve().parents[2] / "src" / "shipyard"
DOC = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"
ROUTED = {"event": 0, "record_event": 2}        # call name -> position of the kind argument
RECORDED = {"add_event": 1, "audit": 1}


def _kind_arg(call: ast.Call, position: int) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == "kind":
            return kw.value
    return call.args[position] if len(call.args) > position else None


def emissions() -> list[tuple[str, bool, bool, str]]:
    """(kind or f-string prefix, is a prefix, routed, where) for every emitting call in the source."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name == "event" and not isinstance(func, ast.Attribute):
                continue
            table = ROUTED if name in ROUTED else RECORDED if name in RECORDED else None
            if table is None:
                continue
            arg = _kind_arg(node, table[name])
            where = f"{path.relative_to(SRC)}:{node.lineno}"
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((arg.value, False, table is ROUTED, where))
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                found.append((str(arg.values[0].value), True, table is ROUTED, where))
    return found


def _returned_strings(path: Path, function: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    return {n.value for r in ast.walk(fn) if isinstance(r, ast.Return) for n in ast.walk(r)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_every_emitted_kind_is_registered() -> None:
    found = emissions()
    assert len(found) > 20, "the scan should see the engine's events"
    missing = [(k, where) for k, prefix, _, where in found
               if not (any(name.startswith(k) for name in KINDS) if prefix else k in KINDS)]
    assert not missing, f"emitted but not in domain/events.py: {missing}"


def test_kinds_built_from_states_are_all_registered() -> None:
    assert {f"alarm.{s.lower()}" for s in AlarmState} <= set(KINDS)
    promotion_states = _returned_strings(SRC / "fleet" / "execute.py", "_final_state")
    assert promotion_states and {f"promotion.{s}" for s in promotion_states} <= set(KINDS)
    # monitoring/judge.py: Verdict.verdict is pass | marginal | fail | nodata
    assert {f"analysis.{v}" for v in ("pass", "marginal", "fail", "nodata")} <= set(KINDS)


def test_every_registered_kind_is_emitted_the_way_it_says() -> None:
    found = emissions()

    def matches(name: str, kind: str, prefix: bool) -> bool:
        return name.startswith(kind) if prefix else name == kind

    for name, k in KINDS.items():
        ways = [routed for kind, prefix, routed, _ in found if matches(name, kind, prefix)]
        assert ways, f"{name} is registered but nothing emits it"
        assert k.notified == any(ways), f"{name}: notified={k.notified} but emitted routed={any(ways)}"


def test_severities_come_from_the_registry() -> None:
    assert all(severity_of(name) == k.severity for name, k in KINDS.items())
    assert severity_of("plugin.something") == "info"


def test_docs_list_every_kind_as_generated() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert kinds.documented(text) == kinds.section(), (
        "docs/notifications.md's event kinds differ from domain/events.py: run "
        "`python -m shipyard.notify.kinds docs/notifications.md`")
    for name in KINDS:
        assert f"`{name}`" in text
