"""Release group runs and their members: create, update each member as it moves, list, find unfinished.

Each change is its own short transaction (`with store.session() as s:`), written before the engine acts on
it, so the record is never behind what runs by more than the one member in flight: that is what `shipyard
recover` reads to finish or roll back a group whose process died. A member's deployment id is written in
the same transaction that creates the deployment row (engine.deployer), so no deployment of a group is
ever unlinked.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.groups.plan import GROUP_STATES, GROUP_UNFINISHED, MEMBER_STATES, GroupPlan
from shipyard.store.models import ReleaseGroupMember, ReleaseGroupRun
from shipyard.store.sql import clean_text, utcnow

ID_PREFIX = "release-"


def new_group_id(now: datetime) -> str:
    """`release-YYYYMMDD-HHMMSS-<hex8>`: sorts by time and shares `show`'s prefix lookup with deployments."""
    return f"{ID_PREFIX}{now:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


def create_group(session: Session, *, name: str, env: str, plan: GroupPlan, actor: str, owner: str,
                 promotion_id: str | None = None, now: datetime | None = None) -> ReleaseGroupRun:
    """Record a group run (queued) and every member (pending) with the revision it goes to."""
    now = now or utcnow()
    row = ReleaseGroupRun(id=new_group_id(now), name=name, env=env, state="queued", actor=actor, owner=owner,
                          promotion_id=promotion_id, created_at=now, updated_at=now)
    session.add(row)
    session.flush()         # before the members: without a relationship() the ORM does not order the inserts
    for m in plan.members:
        session.add(ReleaseGroupMember(group_id=row.id, service=m.service, wave=m.wave, position=m.position,
                                       ref=m.ref, revision=m.revision, state="pending", updated_at=now))
    session.flush()
    return row


def get_group(session: Session, group_id: str) -> ReleaseGroupRun | None:
    return session.get(ReleaseGroupRun, group_id, populate_existing=True)


def members(session: Session, group_id: str) -> list[ReleaseGroupMember]:
    """The members of one run in plan order (wave, then place in the wave)."""
    return list(session.scalars(select(ReleaseGroupMember).where(ReleaseGroupMember.group_id == group_id)
                                .order_by(ReleaseGroupMember.wave, ReleaseGroupMember.position)
                                .execution_options(populate_existing=True)))


def list_groups(session: Session, *, env: str | None = None, name: str | None = None,
                limit: int = 20) -> list[ReleaseGroupRun]:
    q = select(ReleaseGroupRun).order_by(ReleaseGroupRun.created_at.desc(), ReleaseGroupRun.id.desc())
    if env:
        q = q.where(ReleaseGroupRun.env == env)
    if name:
        q = q.where(ReleaseGroupRun.name == name)
    return list(session.scalars(q.limit(limit)))


def find_unfinished(session: Session) -> list[ReleaseGroupRun]:
    return list(session.scalars(select(ReleaseGroupRun).where(ReleaseGroupRun.state.in_(GROUP_UNFINISHED))
                                .order_by(ReleaseGroupRun.created_at)))


def set_group(session: Session, group_id: str, state: str, reason: str | None = None, **changes: Any) -> None:
    """Move the run to `state` (with started_at/finished_at/owner as given)."""
    if state not in GROUP_STATES:
        raise ValueError(f"unknown release group state {state!r}")
    row = session.get(ReleaseGroupRun, group_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise ValueError(f"no release group {group_id!r}")
    row.state, row.updated_at = state, utcnow()
    if reason is not None:
        row.reason = clean_text(reason)
    for key, value in changes.items():
        setattr(row, key, value)


def set_member(session: Session, group_id: str, service: str, state: str | None = None,
               reason: str | None = None, **changes: Any) -> None:
    if state is not None and state not in MEMBER_STATES:
        raise ValueError(f"unknown release group member state {state!r}")
    row = session.get(ReleaseGroupMember, (group_id, service), with_for_update=True, populate_existing=True)
    if row is None:
        raise ValueError(f"{service} is no member of {group_id}")
    if state is not None:
        row.state = state
    if reason is not None:
        row.reason = clean_text(reason)
    for key, value in changes.items():
        setattr(row, key, value)
    row.updated_at = utcnow()


def link_deployment(session: Session, group_id: str, service: str, deployment_id: str, kind: str) -> None:
    """Tie a deployment row to its member: the forward deploy (`deploy`) or the abort's `rollback`."""
    if kind == "rollback":
        set_member(session, group_id, service, rollback_id=deployment_id)
    else:
        set_member(session, group_id, service, "running", deployment_id=deployment_id)


def unfinished_group_of(session: Session, service: str, env: str) -> ReleaseGroupRun | None:
    """The unfinished group run that (service, env) is a member of, if any."""
    return session.scalars(
        select(ReleaseGroupRun).join(ReleaseGroupMember, ReleaseGroupMember.group_id == ReleaseGroupRun.id)
        .where(ReleaseGroupMember.service == service, ReleaseGroupRun.env == env,
               ReleaseGroupRun.state.in_(GROUP_UNFINISHED))
        .order_by(ReleaseGroupRun.created_at).limit(1)).first()


def member_dicts(rows: Sequence[ReleaseGroupMember]) -> list[dict[str, Any]]:
    return [{"service": m.service, "wave": m.wave + 1, "ref": m.ref, "revision": m.revision, "state": m.state,
             "reason": m.reason, "deployment_id": m.deployment_id, "rollback_id": m.rollback_id} for m in rows]


def group_dict(row: ReleaseGroupRun, rows: Sequence[ReleaseGroupMember]) -> dict[str, Any]:
    """A run and its members as plain data (CLI --json, the API)."""
    return {"id": row.id, "name": row.name, "env": row.env, "state": row.state, "reason": row.reason,
            "actor": row.actor, "promotion_id": row.promotion_id, "created_at": row.created_at,
            "started_at": row.started_at, "finished_at": row.finished_at, "members": member_dicts(rows)}
