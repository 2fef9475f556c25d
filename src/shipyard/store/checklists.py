"""Checklist items of deployments: session-taking queries (the rules are in shipyard.domain.checklists and
the moves in shipyard.engine.checklists).

A result is written with a compare-and-swap on `status = 'pending'`: of two people confirming one item at
once (two API calls, a CLI and the dashboard) exactly one is recorded, and an automated check run twice
(a recover re-running a dead run's post checks) never overwrites what the first run recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shipyard.domain.checklists import MANUAL, PENDING, PRE, Item, clip, shown_status
from shipyard.domain.deployment import DeployState
from shipyard.store.models import ChecklistResult
from shipyard.store.sql import clean_text, rowcount, utcnow


def create_items(session: Session, deployment_id: str, items: Iterable[Item]) -> None:
    for pos, item in enumerate(items):
        session.add(ChecklistResult(deployment_id=deployment_id, phase=item.phase, position=pos, name=item.name,
                                    kind=item.kind, spec=item.spec, on_fail=item.on_fail, status=PENDING))
    session.flush()


def list_items(session: Session, deployment_id: str, phase: str | None = None) -> list[ChecklistResult]:
    stmt = (select(ChecklistResult).where(ChecklistResult.deployment_id == deployment_id)
            .order_by(ChecklistResult.position).execution_options(populate_existing=True))
    if phase is not None:
        stmt = stmt.where(ChecklistResult.phase == phase)
    return list(session.scalars(stmt))


def get_item(session: Session, deployment_id: str, name: str) -> ChecklistResult | None:
    return session.scalar(select(ChecklistResult).where(ChecklistResult.deployment_id == deployment_id,
                                                        ChecklistResult.name == name)
                          .execution_options(populate_existing=True))


def as_item(row: ChecklistResult) -> Item:
    return Item(row.phase, row.name, row.kind, dict(row.spec), row.on_fail)


def pending_manual_pre(session: Session, deployment_id: str) -> list[str]:
    """Names of the manual pre items nobody confirmed yet, in order: the gate stays shut while any is left."""
    stmt = (select(ChecklistResult.name)
            .where(ChecklistResult.deployment_id == deployment_id, ChecklistResult.phase == PRE,
                   ChecklistResult.kind == MANUAL, ChecklistResult.status == PENDING)
            .order_by(ChecklistResult.position))
    return list(session.scalars(stmt))


def has_manual_pre(session: Session, deployment_id: str) -> bool:
    return bool(session.scalar(select(func.count()).select_from(ChecklistResult).where(
        ChecklistResult.deployment_id == deployment_id, ChecklistResult.phase == PRE,
        ChecklistResult.kind == MANUAL)))


def record(session: Session, deployment_id: str, name: str, *, status: str, by: str | None = None,
           detail: str | None = None, seconds: float | None = None, now: datetime | None = None) -> bool:
    """Set a pending item's outcome; False when it is not pending any more (someone else recorded it)."""
    result = session.execute(
        update(ChecklistResult)
        .where(ChecklistResult.deployment_id == deployment_id, ChecklistResult.name == name,
               ChecklistResult.status == PENDING)
        .values(status=status, by=by, detail=clean_text(clip(detail)), seconds=seconds, at=now or utcnow())
        .execution_options(synchronize_session=False))
    return rowcount(result) == 1


def view(session: Session, deployment_id: str, state: str) -> list[dict[str, Any]]:
    """The API's `checklist` field and `shipyard show`'s: one object per item, in order (pre, then post)."""
    terminal = DeployState(state).terminal
    return [{"phase": r.phase, "name": r.name, "kind": r.kind,
             "status": shown_status(r.status, r.phase, r.kind, state, terminal),
             "by": r.by, "at": r.at.isoformat() if r.at else None, "detail": r.detail, "on_fail": r.on_fail}
            for r in list_items(session, deployment_id)]


def statements(session: Session, deployment_id: str, names: list[str]) -> list[str]:
    """`name: the statement` of the manual items named (what people are asked to confirm)."""
    rows = {r.name: r for r in list_items(session, deployment_id, PRE)}
    return [f"{n}: {dict(rows[n].spec).get('confirm', n)}" for n in names if n in rows]
