"""Outbox rows: notifications waiting to be delivered, and what became of each.

Rows are added in the transaction that appends their event (so a committed event always has its
notifications, and a rolled-back one never does); the worker then moves each row pending -> delivered or
failed, recording every attempt's error so nothing is lost silently.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shipyard.store.models import OutboxEntry
from shipyard.store.sql import cap_text, rowcount, utcnow

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"
ERROR_LIMIT: Final = 4096


def enqueue(session: Session, *, event_id: int | None, channel: str, idempotency_key: str,
            payload: dict[str, Any], now: datetime | None = None) -> OutboxEntry:
    """Add one pending delivery, due at once."""
    now = now or utcnow()
    row = OutboxEntry(event_id=event_id, channel=channel, idempotency_key=idempotency_key, payload=payload,
                      state=PENDING, attempts=0, created_at=now, next_attempt_at=now)
    session.add(row)
    session.flush()
    return row


def due(session: Session, *, now: datetime | None = None, limit: int = 100) -> list[OutboxEntry]:
    """Pending rows whose next attempt is due, oldest first (so events reach a channel in order)."""
    now = now or utcnow()
    stmt = (select(OutboxEntry).where(OutboxEntry.state == PENDING, OutboxEntry.next_attempt_at <= now)
            .order_by(OutboxEntry.id).limit(limit))
    return list(session.scalars(stmt))


def next_due_at(session: Session) -> datetime | None:
    """When the earliest pending row becomes due (None: nothing pending)."""
    stmt = select(OutboxEntry.next_attempt_at).where(OutboxEntry.state == PENDING) \
        .order_by(OutboxEntry.next_attempt_at).limit(1)
    return session.scalars(stmt).first()


def mark_delivered(session: Session, row_id: int, *, now: datetime | None = None) -> bool:
    result = session.execute(update(OutboxEntry).where(OutboxEntry.id == row_id, OutboxEntry.state == PENDING)
                             .values(state=DELIVERED, delivered_at=now or utcnow(),
                                     attempts=OutboxEntry.attempts + 1))
    return rowcount(result) == 1


def mark_retry(session: Session, row_id: int, error: str, delay: float, *, now: datetime | None = None) -> None:
    now = now or utcnow()
    session.execute(update(OutboxEntry).where(OutboxEntry.id == row_id, OutboxEntry.state == PENDING)
                    .values(attempts=OutboxEntry.attempts + 1, last_error=cap_text(error, ERROR_LIMIT),
                            next_attempt_at=now + timedelta(seconds=delay)))


def mark_failed(session: Session, row_id: int, error: str) -> None:
    session.execute(update(OutboxEntry).where(OutboxEntry.id == row_id, OutboxEntry.state == PENDING)
                    .values(state=FAILED, attempts=OutboxEntry.attempts + 1,
                            last_error=cap_text(error, ERROR_LIMIT)))


def counts(session: Session) -> dict[str, int]:
    """Rows per state (for `shipyard notify worker` and tests)."""
    out = {PENDING: 0, DELIVERED: 0, FAILED: 0}
    for row in session.scalars(select(OutboxEntry)):
        out[row.state] = out.get(row.state, 0) + 1
    return out


def all_rows(session: Session) -> list[OutboxEntry]:
    return list(session.scalars(select(OutboxEntry).order_by(OutboxEntry.id)))


def defer(session: Session, row_ids: list[int], until: datetime) -> None:
    """Push rows' next attempt to `until` without counting an attempt (their channel is failing now)."""
    if row_ids:
        session.execute(update(OutboxEntry).where(OutboxEntry.id.in_(row_ids), OutboxEntry.state == PENDING)
                        .values(next_attempt_at=until))


def claim(session: Session, row_ids: list[int], *, lease: float, now: datetime | None = None) -> list[int]:
    """Take due rows for one worker: their next attempt moves `lease` seconds ahead, so a second worker
    does not send them too; if this worker dies mid-send they become due again when the lease ends."""
    now = now or utcnow()
    won: list[int] = []
    for row_id in row_ids:
        result = session.execute(update(OutboxEntry)
                                 .where(OutboxEntry.id == row_id, OutboxEntry.state == PENDING,
                                        OutboxEntry.next_attempt_at <= now)
                                 .values(next_attempt_at=now + timedelta(seconds=lease)))
        if rowcount(result) == 1:
            won.append(row_id)
    return won
