"""Marking folded days whose figures a change of a run may have moved (see `shipyard.store.folding`).

A day's aggregates are computed from its runs when the day is closed, and two later writes can make them
wrong: a change to a run created on a closed day (it finished after midnight, or was rolled back later),
and a run reaching its env, which restores a failure of an earlier day that was counted unrestored. Both
add a `fold_dirty` mark for the day; reports read a marked day from its raw rows (`aggregates.horizon`)
until the next fold replaces its aggregates and removes the marks it saw.

The mark is written in the run's own transaction while holding the horizon row in share mode; a fold
holds it exclusively from before it reads a day until it commits that day's aggregates. So a change
either commits before the fold reads the day (the fold sees it) or waits for the fold to commit and
marks the day after it (the next fold sees it): never lost between the two. (SQLite's BEGIN IMMEDIATE
serializes every writer, which gives the same order.)
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.store.models import DailyAggregate, FoldDirty, HistoryHorizon

HORIZON_ID = 1


def floor_day(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def mark_changed(session: Session, *, created_at: datetime, service: str, env: str, reached: bool,
                 now: datetime) -> None:
    """Called when a run changed: mark the folded days whose figures the change may have moved."""
    today = floor_day(now)
    days: set[datetime] = set()
    closed = created_at < today
    if not closed and not reached:
        return                     # the common case: a run of today, which no fold has read yet
    session.scalars(select(HistoryHorizon.id).where(HistoryHorizon.id == HORIZON_ID)
                    .with_for_update(read=True)).first()
    if closed:
        days.add(floor_day(created_at))
    if reached:                    # a failure of an earlier day counted unrestored is restored now
        days.update(session.scalars(
            select(DailyAggregate.day).where(DailyAggregate.service == service, DailyAggregate.env == env,
                                             DailyAggregate.kind == "deploy", DailyAggregate.unrestored > 0,
                                             DailyAggregate.day < today)))
    session.add_all(FoldDirty(day=day, marked_at=now) for day in sorted(days))
