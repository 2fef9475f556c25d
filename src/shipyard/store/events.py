"""The event log: append-only lines that history, audit and notifications read.

Events are appended in the same transaction as the state change they describe, so the log never claims
something the deployment table does not show (and vice versa).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.store.models import Event
from shipyard.store.sql import cap_text, utcnow

MESSAGE_LIMIT = 64 * 1024


def add_event(
    session: Session,
    kind: str,
    *,
    service: str,
    env: str,
    message: str = "",
    deployment_id: str | None = None,
    data: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> Event:
    """Append one event (`kind` is dotted: `deploy.started`, `step.failed`, `rollback.completed`)."""
    row = Event(kind=kind, service=service, env=env, message=cap_text(message, MESSAGE_LIMIT) or "",
                deployment_id=deployment_id, data=dict(data) if data is not None else None,
                at=at or utcnow())
    session.add(row)
    session.flush()
    return row


def list_events(
    session: Session,
    *,
    deployment_id: str | None = None,
    service: str | None = None,
    env: str | None = None,
    kind: str | None = None,
    after_id: int | None = None,
    since: datetime | None = None,
    limit: int | None = 100,
    newest_first: bool = True,
) -> list[Event]:
    """Events matching every given filter.

    `kind` ending in `.*` matches a family (`rollback.*`). `after_id` lets a reader tail the log (ids only
    grow), and with `newest_first=False` the oldest matching events come first, as a timeline reads.
    """
    stmt = select(Event)
    if deployment_id is not None:
        stmt = stmt.where(Event.deployment_id == deployment_id)
    if service is not None:
        stmt = stmt.where(Event.service == service)
    if env is not None:
        stmt = stmt.where(Event.env == env)
    if kind is not None:
        if kind.endswith(".*"):
            stmt = stmt.where(Event.kind.startswith(kind[:-1], autoescape=True))
        else:
            stmt = stmt.where(Event.kind == kind)
    if after_id is not None:
        stmt = stmt.where(Event.id > after_id)
    if since is not None:
        stmt = stmt.where(Event.at >= since)
    order = (Event.at.desc(), Event.id.desc()) if newest_first else (Event.at.asc(), Event.id.asc())
    stmt = stmt.order_by(*order)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))
