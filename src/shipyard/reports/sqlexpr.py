"""SQL building blocks the report queries share: durations in seconds, percentiles, the period filter.

Everything is computed by the database (GROUP BY, window functions), on SQLite and PostgreSQL alike, so a
report over a million deployments moves a few dozen rows into Python, never the history itself.

Percentiles are nearest-rank: the p-th percentile of n sorted values is the value at rank ceil(p*n/100)
(1-based), so it is always a value that occurred. Window functions (`row_number`, `count(*) OVER`) give the
rank on both backends; SQLite has no percentile aggregate and PostgreSQL's interpolates, so this one
definition is used everywhere, also in Python (`nearest_rank`) for lead times read from git.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, extract, false, func, or_, select
from sqlalchemy.orm import Session

from shipyard.reports.period import Period
from shipyard.store.models import Deployment

PERCENTILES = (50, 90)


def seconds_between(start: Any, end: Any, dialect: str) -> ColumnElement[Any]:
    """`end - start` in seconds (a float), as each backend spells it."""
    if dialect == "sqlite":
        # SQLite keeps these as fixed-width UTC text; julianday() reads fractional seconds too.
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return extract("epoch", end - start)


def in_period(period: Period, service: str | None, env: str | None, *, table: Any = Deployment,
              since: datetime | None = None, until: datetime | None = None) -> ColumnElement[bool]:
    """created_at within the period (or since/until if given), and the service/env filters. A period with a
    gap (its whole days read from aggregates) is two ranges, each of which the created_at index answers."""
    lo, hi = since or period.since, until or period.until
    gap = period.gap if since is None and until is None else None
    if gap is not None and gap[0] < gap[1]:
        ranges = [and_(table.created_at >= a, table.created_at < b) for a, b in ((lo, gap[0]), (gap[1], hi)) if a < b]
        conds: list[Any] = [or_(*ranges) if len(ranges) > 1 else ranges[0]] if ranges else [false()]
    else:
        conds = [table.created_at >= lo, table.created_at < hi]
    if service is not None:
        conds.append(table.service == service)
    if env is not None:
        conds.append(table.env == env)
    return and_(*conds)


def percentiles(session: Session, values: Select[Any], groups: Sequence[str],
                ps: Sequence[int] = PERCENTILES) -> dict[tuple[Any, ...], dict[int, float]]:
    """Nearest-rank percentiles of column `v` of `values`, per combination of its `groups` columns.

    `values` must select the group columns and a non-null column labelled `v`. The answer maps each group
    key (a tuple; `()` without groups) to {p: value}."""
    sub = values.subquery()
    part = [sub.c[g] for g in groups]
    rank = func.row_number().over(partition_by=part or None, order_by=sub.c.v)
    count = func.count().over(partition_by=part or None)
    ranked = select(*part, sub.c.v, rank.label("rn"), count.label("n")).subquery()
    cols = [func.max(case((ranked.c.rn == (p * ranked.c.n + 99) // 100, ranked.c.v))).label(f"p{p}") for p in ps]
    keys = [ranked.c[g] for g in groups]
    stmt = select(*keys, *cols)
    if keys:
        stmt = stmt.group_by(*keys)
    out: dict[tuple[Any, ...], dict[int, float]] = {}
    for row in session.execute(stmt):
        key = tuple(row[: len(keys)])
        found = {p: float(row[len(keys) + i]) for i, p in enumerate(ps) if row[len(keys) + i] is not None}
        if found:
            out[key] = found
    return out


def nearest_rank(values: Sequence[float], p: int) -> float | None:
    """The same percentile in Python: the value at rank ceil(p*n/100) of the sorted values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, (p * len(ordered) + 99) // 100) - 1]


def ratio(part: int, whole: int, digits: int = 2) -> float | None:
    """part/whole as a percentage rounded to `digits`; None when there is nothing to divide by."""
    return round(100.0 * part / whole, digits) if whole else None


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def dialect_of(session: Session) -> str:
    return session.get_bind().dialect.name


@contextlib.contextmanager
def reading(source: Any) -> Iterator[Session]:
    """A session to read from: the caller's own Session as it is, or a read-only one from a Store."""
    if isinstance(source, Session):
        yield source
        return
    with source.session(readonly=True) as session:
        yield session
