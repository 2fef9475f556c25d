"""Pipeline time per deployment and its p50/p95, against TPT's KPI of a pipeline under 30 minutes.

A deployment's pipeline time is the sum of its finished pipeline steps (build, migrate, command stages,
the scan: domain.plan.PIPELINE_KINDS), so it counts for a deploy that failed at a stage too: a slow test
stage is slow whether or not it passed. One GROUP BY over the raw steps, one row per deployment.
Closed days are read from their daily aggregates (`store.folding` keeps each day's `pipeline` figures:
the count, a histogram of the times, the max, how many went over the KPI and the day's slowest runs), as
stats and DORA do: counts, max, over-KPI and the slowest list stay exact, p50/p95 come within
`histogram.RESOLUTION` for the aggregated days. Days pruned before aggregates kept pipeline figures
(revision 0010) count for nothing here (`deployments` says how many runs were counted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Final

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from shipyard.domain.plan import PIPELINE_KINDS
from shipyard.reports.aggregates import horizon, rows_of, split
from shipyard.reports.histogram import histogram, merge, merged_percentile
from shipyard.reports.period import Period
from shipyard.reports.sqlexpr import dialect_of, in_period, reading, rounded, seconds_between
from shipyard.store.models import Deployment as D
from shipyard.store.models import StepRecord as S

KPI_SECONDS: Final = 30 * 60
SLOWEST: Final = 5

Timed = tuple[str, str, str, str, float]        # deployment id, service, env, kind, pipeline seconds


def pipeline_times(session: Session, where: ColumnElement[bool]) -> list[Timed]:
    """Each deployment matching `where` that has finished pipeline steps, with the sum of their times.

    The steps are found through `deployment_id IN (the matching runs)`: a plain join lets SQLite's planner
    scan every step of history (the step filters look selective to it) where the index answers a day's."""
    dur = seconds_between(S.started_at, S.ended_at, dialect_of(session))
    runs = select(D.id).where(where)
    per = (select(S.deployment_id, func.sum(dur).label("seconds"))
           .where(S.deployment_id.in_(runs), S.phase == "deploy", S.kind.in_(sorted(PIPELINE_KINDS)),
                  S.started_at.is_not(None), S.ended_at.is_not(None))
           .group_by(S.deployment_id).subquery())
    stmt = select(D.id, D.service, D.env, D.kind, per.c.seconds).join(per, per.c.deployment_id == D.id)
    return [(r.id, r.service, r.env, r.kind, float(r.seconds or 0)) for r in session.execute(stmt)]


def _slowest(rows: Iterable[tuple[str, str, str, float]]) -> list[tuple[str, str, str, float]]:
    return sorted(rows, key=lambda r: -r[3])[:SLOWEST]


def fold_figures(times: list[tuple[str, float]]) -> dict[str, Any]:
    """What a daily aggregate keeps of its runs' pipeline times ((id, seconds) each)."""
    values = [v for _, v in times]
    return {"n": len(values), "hist": histogram(values), "max": max(values, default=None),
            "over_kpi": sum(1 for v in values if v > KPI_SECONDS),
            "slowest": [[i, v] for i, _, _, v in _slowest((i, "", "", v) for i, v in times)]}


def pipeline_stats(session: Session, period: Period, service: str | None = None,
                   env: str | None = None) -> dict[str, Any]:
    """{"deployments", "p50_seconds", "p95_seconds", "max_seconds", "kpi_seconds", "over_kpi", "slowest"}."""
    part = split(period.since, period.until, horizon(session))
    raw = pipeline_times(session, in_period(part.raw, service, env)) if part.raw is not None else []
    exact = [r[4] for r in raw]
    hist: dict[str, int] = {}
    count, over, top = len(raw), sum(1 for v in exact if v > KPI_SECONDS), max(exact, default=None)
    slow = [(i, s, e, v) for i, s, e, _, v in raw]
    for a in rows_of(session, part, service, env, need=("pipeline",)):
        fig = a.pipeline
        if not fig or not fig["n"]:
            continue
        count, over = count + int(fig["n"]), over + int(fig["over_kpi"])
        merge(hist, fig["hist"])
        top = fig["max"] if top is None else max(top, fig["max"])
        slow.extend((i, a.service, a.env, float(v)) for i, v in fig["slowest"])
    return {"deployments": count, "p50_seconds": rounded(merged_percentile(exact, hist, 50)),
            "p95_seconds": rounded(merged_percentile(exact, hist, 95)), "max_seconds": rounded(top),
            "kpi_seconds": KPI_SECONDS, "over_kpi": over,
            "slowest": [{"deployment": i, "service": s, "env": e, "seconds": rounded(v)}
                        for i, s, e, v in _slowest(slow)]}


async def pipeline(source: Any, period: Period, service: str | None = None, env: str | None = None) -> dict[str, Any]:
    """`pipeline_stats` from a Store (read in a worker thread) or the caller's Session."""
    if isinstance(source, Session):
        return pipeline_stats(source, period, service, env)

    def read() -> dict[str, Any]:
        with reading(source) as session:
            return pipeline_stats(session, period, service, env)
    return await asyncio.to_thread(read)
