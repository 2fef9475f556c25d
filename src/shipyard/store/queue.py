"""The wait line for a (service, env) lease: first come, first served, with the owner and age on show.

A waiter keeps its place by heartbeating. An entry whose owner died (same host, process gone) or that
stopped heartbeating for `stale_after` is pruned when anyone asks for a position, so a crashed waiter
never blocks the line. The engine's waiter loops: enqueue, then position == 0 and try_acquire, then
dequeue; this module only provides those primitives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from shipyard.store.models import QueueEntry
from shipyard.store.owner import owner_is_dead
from shipyard.store.sql import insert_ignore, rowcount, utcnow

STALE_AFTER = timedelta(seconds=60)  # a waiter heartbeats every few seconds; a minute of silence is death


@dataclass(frozen=True)
class QueuedRun:
    """One line of `shipyard queue`: who waits, for how long, and where in line (None if stale)."""

    id: int
    service: str
    env: str
    deployment_id: str
    owner: str
    enqueued_at: datetime
    heartbeat_at: datetime
    age: timedelta
    position: int | None

    @property
    def stale(self) -> bool:
        return self.position is None


def _entry_id(entry: QueueEntry | int) -> int:
    return entry if isinstance(entry, int) else entry.id


def _is_stale(entry: QueueEntry, now: datetime, stale_after: timedelta) -> bool:
    return entry.heartbeat_at < now - stale_after or owner_is_dead(entry.owner)


def enqueue(
    session: Session, service: str, env: str, deployment_id: str, owner: str, *, now: datetime | None = None,
) -> QueueEntry:
    """Join the line (at the back). Enqueueing a deployment that is already waiting keeps its place."""
    now = now or utcnow()
    insert_ignore(session, QueueEntry, {"service": service, "env": env, "deployment_id": deployment_id,
                                        "owner": owner, "enqueued_at": now, "heartbeat_at": now})
    session.execute(update(QueueEntry).where(QueueEntry.deployment_id == deployment_id)
                    .values(owner=owner, heartbeat_at=now).execution_options(synchronize_session=False))
    entry = session.scalars(select(QueueEntry).where(QueueEntry.deployment_id == deployment_id)
                            .execution_options(populate_existing=True)).one()
    if (entry.service, entry.env) != (service, env):
        raise ValueError(f"deployment {deployment_id} already waits for {entry.service}/{entry.env}")
    return entry


def prune(
    session: Session, service: str, env: str, *, now: datetime | None = None,
    stale_after: timedelta = STALE_AFTER,
) -> list[QueueEntry]:
    """Remove the entries of (service, env) whose owner died or stopped heartbeating; returns them."""
    now = now or utcnow()
    entries = session.scalars(select(QueueEntry).where(QueueEntry.service == service, QueueEntry.env == env)
                              .execution_options(populate_existing=True)).all()
    dead = [e for e in entries if _is_stale(e, now, stale_after)]
    removed = []
    for e in dead:
        # Guarded by the heartbeat we read: a waiter that heartbeated since then keeps its place.
        result = session.execute(delete(QueueEntry)
                                 .where(QueueEntry.id == e.id, QueueEntry.heartbeat_at == e.heartbeat_at)
                                 .execution_options(synchronize_session=False))
        if rowcount(result):
            removed.append(e)
    return removed


def queue_position(
    session: Session, entry: QueueEntry | int, *, now: datetime | None = None,
    stale_after: timedelta = STALE_AFTER,
) -> int | None:
    """How many live entries wait ahead (0 = next in line), after pruning dead ones; None if `entry` was
    pruned or dequeued (the caller must enqueue again)."""
    row = session.get(QueueEntry, _entry_id(entry), populate_existing=True)
    if row is None:
        return None
    prune(session, row.service, row.env, now=now, stale_after=stale_after)
    if session.get(QueueEntry, row.id, populate_existing=True) is None:
        return None
    ahead = session.scalar(select(func.count()).select_from(QueueEntry)
                           .where(QueueEntry.service == row.service, QueueEntry.env == row.env,
                                  QueueEntry.id < row.id))
    return int(ahead or 0)


def queue_heartbeat(session: Session, entry: QueueEntry | int, *, now: datetime | None = None) -> bool:
    """Keep a place in line; False if the entry was pruned (the caller must enqueue again)."""
    result = session.execute(update(QueueEntry).where(QueueEntry.id == _entry_id(entry))
                             .values(heartbeat_at=now or utcnow())
                             .execution_options(synchronize_session=False))
    return rowcount(result) == 1


def dequeue(session: Session, entry: QueueEntry | int) -> bool:
    """Leave the line (after taking the lease, or when giving up); False if already gone."""
    result = session.execute(delete(QueueEntry).where(QueueEntry.id == _entry_id(entry))
                             .execution_options(synchronize_session=False))
    return rowcount(result) == 1


def list_queue(
    session: Session, service: str | None = None, env: str | None = None, *, now: datetime | None = None,
    stale_after: timedelta = STALE_AFTER,
) -> list[QueuedRun]:
    """Everything waiting, in line order per (service, env), with age and live position.

    Read-only: stale entries are shown (position None) rather than removed, so a status display does not
    change what it displays.
    """
    now = now or utcnow()
    stmt = select(QueueEntry).order_by(QueueEntry.service, QueueEntry.env, QueueEntry.id)
    if service is not None:
        stmt = stmt.where(QueueEntry.service == service)
    if env is not None:
        stmt = stmt.where(QueueEntry.env == env)
    runs: list[QueuedRun] = []
    positions: dict[tuple[str, str], int] = {}
    for e in session.scalars(stmt.execution_options(populate_existing=True)):
        position = None
        if not _is_stale(e, now, stale_after):
            position = positions.get((e.service, e.env), 0)
            positions[(e.service, e.env)] = position + 1
        runs.append(QueuedRun(id=e.id, service=e.service, env=e.env, deployment_id=e.deployment_id,
                              owner=e.owner, enqueued_at=e.enqueued_at, heartbeat_at=e.heartbeat_at,
                              age=now - e.enqueued_at, position=position))
    return runs
