"""Approval requests and decisions: session-taking queries (the rules are in shipyard.domain.approvals and
the gate's moves in shipyard.engine.approvals).

The holder columns are a small lease of their own: the process waiting to run an approved deployment
heart-beats `holder_beat_at`; another takes it over only with a compare-and-swap on the values it read, so
two daemons (or a daemon and a CLI) never both run it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shipyard.domain.approvals import Decision, Policy
from shipyard.store.models import ApprovalDecision, ApprovalRequest, Deployment
from shipyard.store.sql import clean_text, insert_ignore, rowcount, utcnow


def policy_of(row: ApprovalRequest) -> Policy:
    p: dict[str, Any] = dict(row.policy)
    people = p.get("approvers")
    return Policy(required=int(p["required"]), approvers=tuple(people) if people is not None else None,
                  wait=float(p["wait"]), timeout=float(p["timeout"]), self_approval=bool(p["self_approval"]),
                  branches=tuple(p.get("branches") or ()))


def create_request(session: Session, deployment_id: str, *, service: str, env: str, requested_by: str,
                   policy: Policy, holder: str, now: datetime | None = None) -> ApprovalRequest:
    now = now or utcnow()
    row = ApprovalRequest(deployment_id=deployment_id, service=service, env=env, requested_by=requested_by,
                          policy=policy.to_dict(), requested_at=now,
                          expires_at=now + timedelta(seconds=policy.timeout), granted_at=None,
                          holder=holder, holder_beat_at=now)
    session.add(row)
    session.flush()
    return row


def get_request(session: Session, deployment_id: str, *, lock: bool = False) -> ApprovalRequest | None:
    return session.get(ApprovalRequest, deployment_id, with_for_update=lock, populate_existing=True)


def list_decisions(session: Session, deployment_id: str) -> list[ApprovalDecision]:
    stmt = (select(ApprovalDecision).where(ApprovalDecision.deployment_id == deployment_id)
            .order_by(ApprovalDecision.at, ApprovalDecision.id))
    return list(session.scalars(stmt))


def as_decisions(rows: list[ApprovalDecision]) -> list[Decision]:
    return [Decision(r.approver, r.decision, r.at, r.comment) for r in rows]


def add_decision(session: Session, deployment_id: str, *, approver: str, decision: str, comment: str, via: str,
                 nonce: str | None = None, now: datetime | None = None) -> bool:
    """Record a decision; False when `nonce` was used already (the row is not added)."""
    return insert_ignore(session, ApprovalDecision, {
        "deployment_id": deployment_id, "approver": approver, "decision": decision,
        "comment": clean_text(comment) or "", "via": via, "nonce": nonce, "at": now or utcnow()})


def nonce_used(session: Session, nonce: str) -> bool:
    return session.scalar(select(ApprovalDecision.id).where(ApprovalDecision.nonce == nonce)) is not None


def beat(session: Session, deployment_id: str, holder: str, now: datetime | None = None) -> bool:
    """Keep holding the run; False when another process took it over."""
    result = session.execute(update(ApprovalRequest)
                             .where(ApprovalRequest.deployment_id == deployment_id, ApprovalRequest.holder == holder)
                             .values(holder_beat_at=now or utcnow()).execution_options(synchronize_session=False))
    return rowcount(result) == 1


def take_over(session: Session, row: ApprovalRequest, holder: str, now: datetime | None = None) -> bool:
    """Become the holder, if nobody changed the holder since `row` was read (compare-and-swap)."""
    result = session.execute(update(ApprovalRequest)
                             .where(ApprovalRequest.deployment_id == row.deployment_id,
                                    ApprovalRequest.holder.is_(None) if row.holder is None
                                    else ApprovalRequest.holder == row.holder,
                                    ApprovalRequest.holder_beat_at.is_(None) if row.holder_beat_at is None
                                    else ApprovalRequest.holder_beat_at == row.holder_beat_at)
                             .values(holder=holder, holder_beat_at=now or utcnow())
                             .execution_options(synchronize_session=False))
    return rowcount(result) == 1


def awaiting(session: Session, *, service: str | None = None,
             env: str | None = None) -> list[tuple[Deployment, ApprovalRequest]]:
    """Deployments awaiting approval with their requests, oldest first."""
    stmt = (select(Deployment, ApprovalRequest).join(ApprovalRequest,
                                                     ApprovalRequest.deployment_id == Deployment.id)
            .where(Deployment.state == "awaiting_approval")
            .order_by(Deployment.created_at, Deployment.id).execution_options(populate_existing=True))
    if service is not None:
        stmt = stmt.where(Deployment.service == service)
    if env is not None:
        stmt = stmt.where(Deployment.env == env)
    return [(d, r) for d, r in session.execute(stmt).all()]
