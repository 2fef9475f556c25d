"""Pipeline time per deployment and its p50/p95, against TPT's KPI of a pipeline under 30 minutes.

A deployment's pipeline time is the sum of its finished pipeline steps (build, migrate, command stages,
the scan: domain.plan.PIPELINE_KINDS), so it counts for a deploy that failed at a stage too: a slow test
stage is slow whether or not it passed. One GROUP BY over the period's steps, one row per deployment.
Daily aggregates (what retention leaves of pruned history) keep no per-deployment stage times, so these
figures cover the raw rows of the period only (`deployments` says how many).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from shipyard.domain.plan import PIPELINE_KINDS
from shipyard.reports.period import Period
from shipyard.reports.sqlexpr import dialect_of, in_period, nearest_rank, reading, rounded, seconds_between
from shipyard.store.models import Deployment as D
from shipyard.store.models import StepRecord as S

KPI_SECONDS: Final = 30 * 60
SLOWEST: Final = 5


def pipeline_stats(session: Session, period: Period, service: str | None = None,
                   env: str | None = None) -> dict[str, Any]:
    """{"deployments", "p50_seconds", "p95_seconds", "max_seconds", "kpi_seconds", "over_kpi", "slowest"}."""
    dur = seconds_between(S.started_at, S.ended_at, dialect_of(session))
    timed = and_(S.phase == "deploy", S.kind.in_(sorted(PIPELINE_KINDS)), S.started_at.is_not(None),
                 S.ended_at.is_not(None))
    stmt = (select(D.id, D.service, D.env, func.sum(dur).label("seconds"))
            .join(S, S.deployment_id == D.id).where(in_period(period, service, env), timed)
            .group_by(D.id, D.service, D.env))
    rows = [(r.id, r.service, r.env, float(r.seconds or 0)) for r in session.execute(stmt)]
    values = [r[3] for r in rows]
    slow = sorted(rows, key=lambda r: -r[3])[:SLOWEST]
    return {"deployments": len(rows), "p50_seconds": rounded(nearest_rank(values, 50)),
            "p95_seconds": rounded(nearest_rank(values, 95)), "max_seconds": rounded(max(values, default=None)),
            "kpi_seconds": KPI_SECONDS, "over_kpi": sum(1 for v in values if v > KPI_SECONDS),
            "slowest": [{"deployment": i, "service": s, "env": e, "seconds": rounded(v)} for i, s, e, v in slow]}


async def pipeline(source: Any, period: Period, service: str | None = None, env: str | None = None) -> dict[str, Any]:
    """`pipeline_stats` from a Store (read in a worker thread) or the caller's Session."""
    if isinstance(source, Session):
        return pipeline_stats(source, period, service, env)

    def read() -> dict[str, Any]:
        with reading(source) as session:
            return pipeline_stats(session, period, service, env)
    return await asyncio.to_thread(read)
