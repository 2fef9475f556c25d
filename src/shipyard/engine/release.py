"""What the deployer needs to know to run a release target (targets.base.ReleaseTarget) through the same
request path as a service with instances: its preflight, its records, its plans.

A release target has no instances to ask what serves, so what is live is read from history: the newest
succeeded run's record (deployments.context["activated"]). A run keeps the record that was live before
it (`previous`), which is what its rollback makes live again, and a manual rollback restores the record
of the revision it goes back to. Everything else (lease, journal, hooks, bake, alarms, notifications,
recovery) is the deployer's, unchanged.
"""

from __future__ import annotations

from typing import Any

from shipyard.domain.plan import Plan
from shipyard.engine.environment import Environment
from shipyard.errors import TargetError
from shipyard.store import deployments as dq
from shipyard.strategies import PlanInput
from shipyard.strategies.release import NAME, release_plan, restore_plan
from shipyard.targets.base import ReleaseTarget

HISTORY = 50


def is_release(e: Environment) -> bool:
    return isinstance(e.target, ReleaseTarget)


async def preflight(e: Environment) -> None:
    """Refuse before anything changes, naming every gap the target found at once."""
    assert isinstance(e.target, ReleaseTarget)
    problems = await e.target.preflight()
    if problems:
        s = e.settings
        raise TargetError(f"{s.service}/{s.env} {getattr(s.target, 'type', 'release')} target: "
                          + "; ".join(problems))


def _record(row: Any) -> dict[str, Any]:
    context = getattr(row, "context", None) or {}
    return dict(context.get("activated") or {"revision": row.revision})


def live(e: Environment) -> dict[str, Any] | None:
    """The record of what is live now: the newest succeeded run's (None before the first deploy)."""
    s = e.settings
    with e.store.session(readonly=True) as ses:
        rows = dq.succeeded_history(ses, s.service, s.env, limit=1)
    return _record(rows[0]) if rows else None


def record_of(e: Environment, revision: str) -> dict[str, Any]:
    """The record a succeeded run of `revision` left (its prefix, its outputs), else just the revision."""
    s = e.settings
    with e.store.session(readonly=True) as ses:
        rows = dq.succeeded_history(ses, s.service, s.env, limit=HISTORY)
        found = next((r for r in rows if r.revision == revision), None)
    if found is None:
        return {"revision": revision}
    return _record(found)


def deploy_plan(e: Environment) -> Plan:
    s = e.settings
    return release_plan(PlanInput(current=0, desired=0, bake=s.bake, hooks=frozenset(s.hooks),
                                  migrate=s.migrate is not None))


def rollback_plan(e: Environment) -> Plan:
    assert isinstance(e.target, ReleaseTarget)
    return restore_plan("rollback_needs_release" in e.target.capabilities)


def in_use(revisions: list[str | None]) -> set[str]:
    return {r for r in revisions if r}


__all__ = ["NAME", "ReleaseTarget", "deploy_plan", "in_use", "is_release", "live", "preflight", "record_of",
           "rollback_plan"]
