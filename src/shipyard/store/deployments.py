"""Deployment records: create, read, move through states, and find the last good one.

Every state change goes through `update_deployment`, which applies `shipyard.domain.check_transition` to the
state read under a row lock (SELECT ... FOR UPDATE on PostgreSQL; SQLite write transactions are already
serialized by BEGIN IMMEDIATE), so two processes cannot both move the same deployment from the same state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shipyard.domain import DeployState, check_transition, new_deployment_id
from shipyard.errors import StoreError
from shipyard.store.fold_marks import mark_changed
from shipyard.store.models import Deployment
from shipyard.store.sql import clean_text, insert_ignore, utcnow

UNFINISHED: Final = (DeployState.QUEUED, DeployState.IN_PROGRESS, DeployState.ROLLING_BACK)
KINDS: Final = frozenset({"deploy", "rollback"})


class _Unset:
    """Marks an argument that was not given, so None can mean "clear this column"."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


def unique_deployment_id(session: Session, base: str) -> str:
    """`base`, or `base-2`, `base-3`, ... whichever is free: two runs of one sha in one second both fit."""
    taken = set(session.scalars(
        select(Deployment.id).where(or_(Deployment.id == base,
                                        Deployment.id.startswith(base + "-", autoescape=True)))))
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def create_deployment(
    session: Session,
    *,
    service: str,
    env: str,
    revision: str,
    strategy: str,
    actor: str,
    ref: str = "",
    kind: str = "deploy",
    plan: Sequence[Mapping[str, Any]] = (),
    state: DeployState | str = DeployState.QUEUED,
    previous_revision: str | None = None,
    rollback_of: str | None = None,
    owner: str | None = None,
    reason: str | None = None,
    context: Mapping[str, Any] | None = None,
    deployment_id: str | None = None,
    now: datetime | None = None,
) -> Deployment:
    """Record a new deployment; its id is derived from time and sha unless `deployment_id` is given.

    The row is inserted with insert-if-absent and the next suffix is tried on a clash, so two processes
    creating the same id at the same moment both succeed with distinct ids.
    """
    if kind not in KINDS:
        raise ValueError(f"deployment kind must be one of {sorted(KINDS)}, not {kind!r}")
    now = now or utcnow()
    state = DeployState(state)
    base = deployment_id or new_deployment_id(now, revision)
    values: dict[str, Any] = {
        "service": service, "env": env, "kind": kind, "revision": revision, "ref": ref,
        "previous_revision": previous_revision, "strategy": strategy, "state": state.value,
        "reason": clean_text(reason), "actor": actor, "owner": owner, "plan": [dict(s) for s in plan],
        "context": dict(context) if context is not None else None,
        "created_at": now, "updated_at": now, "rollback_of": rollback_of,
        "started_at": now if state is DeployState.IN_PROGRESS else None,
        "finished_at": now if state.terminal else None,
    }
    for _attempt in range(100):
        candidate = unique_deployment_id(session, base)
        if deployment_id is not None and candidate != deployment_id:
            raise StoreError(f"deployment {deployment_id} already exists")
        if insert_ignore(session, Deployment, {"id": candidate, **values}):
            row = session.get(Deployment, candidate, populate_existing=True)
            assert row is not None
            return row
    raise StoreError(f"could not find a free deployment id for {base}")


def get_deployment(session: Session, deployment_id: str) -> Deployment | None:
    return session.get(Deployment, deployment_id, populate_existing=True)


def update_deployment(
    session: Session,
    deployment_id: str,
    *,
    state: DeployState | str | None = None,
    reason: str | _Unset | None = UNSET,
    started_at: datetime | _Unset | None = UNSET,
    finished_at: datetime | _Unset | None = UNSET,
    owner: str | _Unset | None = UNSET,
    previous_revision: str | _Unset | None = UNSET,
    plan: Sequence[Mapping[str, Any]] | _Unset = UNSET,
    context: Mapping[str, Any] | _Unset | None = UNSET,
    now: datetime | None = None,
) -> Deployment:
    """Change a deployment; a state change must be allowed by the domain rules (else InvalidTransition).

    Entering in_progress stamps `started_at` and entering a terminal state stamps `finished_at`, unless the
    caller gives them, so history never shows a finished run without an end time. Each is stamped once: a
    succeeded run rolled back later keeps the time it ended (its duration in history and reports stays
    true); the rollback has its own record and times.
    """
    row = session.get(Deployment, deployment_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise StoreError(f"no deployment {deployment_id}")
    now = now or utcnow()
    if state is not None:
        target = check_transition(row.state, state)
        row.state = target.value
        if target is DeployState.IN_PROGRESS and row.started_at is None and isinstance(started_at, _Unset):
            row.started_at = now
        if target.terminal and isinstance(finished_at, _Unset) and row.finished_at is None:
            row.finished_at = now
    if not isinstance(reason, _Unset):
        row.reason = clean_text(reason)
    if not isinstance(started_at, _Unset):
        row.started_at = started_at
    if not isinstance(finished_at, _Unset):
        row.finished_at = finished_at
    if not isinstance(owner, _Unset):
        row.owner = owner
    if not isinstance(previous_revision, _Unset):
        row.previous_revision = previous_revision
    if not isinstance(plan, _Unset):
        row.plan = [dict(s) for s in plan]
    if not isinstance(context, _Unset):
        row.context = dict(context) if context is not None else None
    row.updated_at = now
    if state is not None or not isinstance(finished_at, _Unset):
        mark_changed(session, created_at=row.created_at, service=row.service, env=row.env, now=now,
                     reached=row.state == DeployState.SUCCEEDED.value and state is not None)
    session.flush()
    return row


def _states(state: DeployState | str | Iterable[DeployState | str]) -> list[str]:
    if isinstance(state, str):
        return [DeployState(state).value]
    return [DeployState(s).value for s in state]


def list_deployments(
    session: Session,
    *,
    service: str | None = None,
    env: str | None = None,
    state: DeployState | str | Iterable[DeployState | str] | None = None,
    kind: str | None = None,
    limit: int | None = 50,
) -> list[Deployment]:
    """Deployments newest first, filtered by any of service, env, state (one or several) and kind."""
    stmt = select(Deployment).order_by(Deployment.created_at.desc(), Deployment.id.desc())
    if service is not None:
        stmt = stmt.where(Deployment.service == service)
    if env is not None:
        stmt = stmt.where(Deployment.env == env)
    if state is not None:
        stmt = stmt.where(Deployment.state.in_(_states(state)))
    if kind is not None:
        stmt = stmt.where(Deployment.kind == kind)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def succeeded_history(session: Session, service: str, env: str, *, limit: int = 2) -> list[Deployment]:
    """The latest succeeded runs (deploys and rollbacks) of (service, env), most recently finished first.

    A run that was later rolled back is no longer `succeeded`, so the head of this list is what should be
    serving now and the next one is where a rollback goes.
    """
    stmt = (select(Deployment)
            .where(Deployment.service == service, Deployment.env == env,
                   Deployment.state == DeployState.SUCCEEDED.value)
            .order_by(Deployment.finished_at.desc().nulls_last(), Deployment.created_at.desc(), Deployment.id.desc())
            .limit(limit))
    return list(session.scalars(stmt))


def last_succeeded(session: Session, service: str, env: str, *, offset: int = 0) -> Deployment | None:
    """The most recent succeeded run of (service, env); `offset=1` gives the one before it."""
    found = succeeded_history(session, service, env, limit=offset + 1)
    return found[offset] if len(found) > offset else None


def find_unfinished(
    session: Session,
    *,
    service: str | None = None,
    env: str | None = None,
    states: Iterable[DeployState | str] = UNFINISHED,
) -> list[Deployment]:
    """Runs that have not reached an end (queued, in progress, rolling back), oldest first: what recovery
    and `shipyard status` look at. Pass `states` to include awaiting_approval."""
    stmt = (select(Deployment).where(Deployment.state.in_(_states(states)))
            .order_by(Deployment.created_at, Deployment.id))
    if service is not None:
        stmt = stmt.where(Deployment.service == service)
    if env is not None:
        stmt = stmt.where(Deployment.env == env)
    return list(session.scalars(stmt))


def ref_of(session: Session, service: str, env: str, revision: str) -> str | None:
    """The ref (branch, tag) the newest deployment of `revision` in (service, env) was asked for, if any."""
    stmt = (select(Deployment.ref)
            .where(Deployment.service == service, Deployment.env == env, Deployment.revision == revision,
                   Deployment.kind == "deploy")
            .order_by(Deployment.created_at.desc(), Deployment.id.desc()).limit(1))
    return session.scalars(stmt).first()
