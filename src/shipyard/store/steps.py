"""Step records: the start and the end of each plan step, written before the next step begins.

A step is keyed by (deployment, phase, index into the plan), so recovery can see exactly which step a dead
run was in; starting a step again (a resumed run) reuses its row rather than adding a second one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from shipyard.domain import StepState
from shipyard.errors import InvalidTransition, StoreError
from shipyard.store.models import StepRecord
from shipyard.store.sql import cap_text, utcnow

OUTPUT_LIMIT: Final = 256 * 1024  # bytes of hook output kept per step (the tail)
ERROR_LIMIT: Final = 16 * 1024
PHASES: Final = ("deploy", "rollback", "finish")   # finish: on_failure/cleanup hooks of a run that did not roll back
FINISHED: Final = frozenset({StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED})


def start_step(
    session: Session,
    deployment_id: str,
    phase: str,
    idx: int,
    kind: str,
    description: str,
    *,
    detail: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> StepRecord:
    """Mark step `idx` of `phase` running (creating its row, or resetting it when a run resumes)."""
    if phase not in PHASES:
        raise ValueError(f"step phase must be one of {PHASES}, not {phase!r}")
    now = now or utcnow()
    row = session.scalars(
        select(StepRecord).where(StepRecord.deployment_id == deployment_id, StepRecord.phase == phase,
                                 StepRecord.idx == idx)
        .with_for_update().execution_options(populate_existing=True)).one_or_none()
    if row is None:
        row = StepRecord(deployment_id=deployment_id, phase=phase, idx=idx)
        session.add(row)
    row.kind, row.description = kind, description
    row.state = StepState.RUNNING.value
    row.started_at, row.ended_at = now, None
    row.detail = dict(detail) if detail is not None else None
    row.output = row.error = None
    session.flush()
    return row


def finish_step(
    session: Session,
    step_id: int,
    state: StepState | str,
    *,
    output: str | None = None,
    error: str | None = None,
    detail: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> StepRecord:
    """Record how a step ended; output keeps its last OUTPUT_LIMIT bytes.

    Only a pending or running step can finish: finishing one twice means two runners think they own the
    deployment, which is a bug to surface, not to paper over.
    """
    target = StepState(state)
    if target not in FINISHED:
        raise ValueError(f"a step finishes as succeeded, failed or skipped, not {target}")
    row = session.get(StepRecord, step_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise StoreError(f"no step {step_id}")
    if row.state not in (StepState.PENDING, StepState.RUNNING):
        raise InvalidTransition(f"step {row.phase}#{row.idx} of {row.deployment_id} is already {row.state}")
    row.state = target.value
    row.ended_at = now or utcnow()
    row.output = cap_text(output, OUTPUT_LIMIT)
    row.error = cap_text(error, ERROR_LIMIT)
    if detail is not None:
        row.detail = {**(row.detail or {}), **detail}
    session.flush()
    return row


def get_step(session: Session, step_id: int) -> StepRecord | None:
    return session.get(StepRecord, step_id, populate_existing=True)


def list_steps(session: Session, deployment_id: str, *, phase: str | None = None) -> list[StepRecord]:
    """Steps in execution order: the deploy phase by index, then the rollback phase by index."""
    phase_order = case({p: n for n, p in enumerate(PHASES)}, value=StepRecord.phase, else_=len(PHASES))
    stmt = (select(StepRecord).where(StepRecord.deployment_id == deployment_id)
            .order_by(phase_order, StepRecord.idx))
    if phase is not None:
        stmt = stmt.where(StepRecord.phase == phase)
    return list(session.scalars(stmt))

