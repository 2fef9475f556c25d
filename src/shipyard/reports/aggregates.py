"""Reading the daily aggregates of closed days (`shipyard.store.folding` and `retention` write them).

A period is split at the horizon (a midnight UTC, see `horizon`): runs created from the horizon on are read
from the raw rows; the days before it from `daily_aggregates`.
Only whole days inside a window are read from aggregates; its partial first and last days come from raw
rows, so counts are exactly those of the raw rows (see `split` for pruned days, where no raw rows are).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from shipyard.reports.period import Period
from shipyard.store.fold_marks import HORIZON_ID, floor_day
from shipyard.store.models import DailyAggregate as A
from shipyard.store.models import FoldDirty, HistoryHorizon

DAY = timedelta(days=1)


def pruned(session: Session) -> datetime | None:
    """Where the raw history starts (None: nothing was ever pruned)."""
    return session.scalars(select(HistoryHorizon.pruned_before).where(HistoryHorizon.id == HORIZON_ID)).first()


@dataclass(frozen=True)
class Horizon:
    """`cut`: reports read the whole days before it from aggregates, what follows from raw rows; `pruned`:
    the raw rows before it are gone (None: nothing was pruned)."""

    cut: datetime
    pruned: datetime | None = None


def horizon(session: Session) -> Horizon | None:
    """The folded horizon, moved back to the oldest day marked changed since its fold (never before the
    pruned one: those raw rows are gone). None: nothing folded or pruned, everything is read raw."""
    row = session.execute(select(HistoryHorizon.pruned_before, HistoryHorizon.folded_before)
                          .where(HistoryHorizon.id == HORIZON_ID)).first()
    if row is None:
        return None
    cut_pruned, folded = row
    if folded is None:
        return Horizon(cut_pruned, cut_pruned) if cut_pruned is not None else None
    dirty = session.scalar(select(func.min(FoldDirty.day)).where(FoldDirty.day < folded))
    cut = min(folded, dirty) if dirty is not None else folded
    return Horizon(max(cut, cut_pruned) if cut_pruned is not None else cut, cut_pruned)


@dataclass(frozen=True)
class Split:
    """A window cut at the horizon: the whole days [lo, hi) read from aggregates, and `raw`, the rest of
    the window (the window with the gap [lo, hi); None: nothing left)."""

    raw: Period | None
    lo: datetime | None = None
    hi: datetime | None = None

    @property
    def aggregated(self) -> bool:
        return self.lo is not None


def _ceil_day(t: datetime) -> datetime:
    day = floor_day(t)
    return day if day == t else day + DAY


def split(since: datetime, until: datetime, h: Horizon | None) -> Split:
    """Only whole days inside the window come from aggregates, so a rolling window (`--period 30d`, from
    now) counts the runs of its first, partial day exactly, from raw rows. Before the pruned horizon
    there are no raw rows: a partial first day there is left out, a partial last day taken whole."""
    if h is None or since >= h.cut:
        return Split(Period(since, until))
    lo = _ceil_day(since)
    if until >= h.cut:
        hi = h.cut
    else:
        last = floor_day(until)
        hi = last if h.pruned is None or last >= h.pruned else _ceil_day(until)
    if lo >= hi:
        return Split(Period(since, until))
    if since >= lo and until <= hi:
        return Split(None, lo, hi)
    return Split(Period(since, until, gap=(lo, hi)), lo, hi)


JSON_COLUMNS = ("dur_hist", "restore_hist", "steps", "pipeline")


def day_rows(session: Session, lo: datetime, hi: datetime, service: str | None, env: str | None,
             need: Sequence[str] = JSON_COLUMNS, kind: str | None = None) -> list[A]:
    """The aggregate rows of the days [lo, hi); of the JSON columns only those in `need` are read (decoding
    the others is most of the cost of a long period)."""
    stmt = select(A).where(A.day >= lo, A.day < hi).options(
        *(defer(getattr(A, name), raiseload=True) for name in JSON_COLUMNS if name not in need))
    if kind is not None:
        stmt = stmt.where(A.kind == kind)
    if service is not None:
        stmt = stmt.where(A.service == service)
    if env is not None:
        stmt = stmt.where(A.env == env)
    return list(session.scalars(stmt))


def rows_of(session: Session, part: Split, service: str | None, env: str | None,
            need: Sequence[str] = JSON_COLUMNS, kind: str | None = None) -> list[A]:
    if part.lo is None or part.hi is None:
        return []
    return day_rows(session, part.lo, part.hi, service, env, need, kind)


def by_pair(rows: Iterable[A]) -> dict[tuple[str, str], list[A]]:
    out: dict[tuple[str, str], list[A]] = {}
    for row in rows:
        out.setdefault((row.service, row.env), []).append(row)
    return out


def _number(value: Any) -> Any:
    """None as 0, a PostgreSQL numeric as a float (it does not add to one)."""
    return 0 if value is None else float(value) if isinstance(value, Decimal) else value


def add_groups(raw: Sequence[dict[str, Any]], extra: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-(service, env) count dicts of the raw part plus those of the aggregates, summed key by key,
    ordered by service and env (as the raw GROUP BYs order them)."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for row in [*raw, *({"service": k[0], "env": k[1], **v} for k, v in extra.items())]:
        key = (row["service"], row["env"])
        into = merged.setdefault(key, {"service": key[0], "env": key[1]})
        for name, value in row.items():
            if name not in ("service", "env"):
                into[name] = _number(into.get(name)) + _number(value)
    return [merged[k] for k in sorted(merged)]
