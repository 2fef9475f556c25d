"""Reading the daily aggregates of pruned days (`shipyard.store.retention` writes them).

A period is split at the horizon (`HistoryHorizon.pruned_before`, a midnight UTC): runs created from the
horizon on are read from the raw rows, as before any prune; the days before it from `daily_aggregates`.
An aggregated day counts in a window when its midnight is inside it (since <= day < until): a window
that starts mid-day on a pruned day leaves that day out, one that ends mid-day takes it whole. Windows on
whole days (the usual `--since 2026-01-01`) give exactly the figures the raw rows gave.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.reports.period import Period
from shipyard.store.models import DailyAggregate as A
from shipyard.store.models import HistoryHorizon

HORIZON_ID = 1


def horizon(session: Session) -> datetime | None:
    """Where the raw history starts (None: nothing was ever pruned)."""
    return session.scalars(select(HistoryHorizon.pruned_before).where(HistoryHorizon.id == HORIZON_ID)).first()


@dataclass(frozen=True)
class Split:
    """A window cut at the horizon: `raw` (None: no part after it) and the aggregated days [lo, hi)."""

    raw: Period | None
    lo: datetime | None = None
    hi: datetime | None = None

    @property
    def aggregated(self) -> bool:
        return self.lo is not None


def split(since: datetime, until: datetime, cut: datetime | None) -> Split:
    if cut is None or since >= cut:
        return Split(Period(since, until))
    raw = Period(cut, until) if until > cut else None
    return Split(raw, since, min(until, cut))


def day_rows(session: Session, lo: datetime, hi: datetime, service: str | None, env: str | None) -> list[A]:
    stmt = select(A).where(A.day >= lo, A.day < hi)
    if service is not None:
        stmt = stmt.where(A.service == service)
    if env is not None:
        stmt = stmt.where(A.env == env)
    return list(session.scalars(stmt))


def rows_of(session: Session, part: Split, service: str | None, env: str | None) -> list[A]:
    if part.lo is None or part.hi is None:
        return []
    return day_rows(session, part.lo, part.hi, service, env)


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
