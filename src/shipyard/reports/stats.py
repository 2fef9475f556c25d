"""Hanbit's stats object for a period: counts, success rate, durations, recent trends and where it hurts.

What counts as what (runs are deploys and rollbacks alike; `kinds` splits them):
- successful: state `succeeded`;
- failed: state `failed` or `rolled_back`. A run rolled back by itself, or rolled back later by
  `shipyard rollback`, did not deliver what it was asked to; Hanbit's "failed" means exactly that;
- cancelled: state `cancelled`; unfinished: queued, awaiting approval, in progress or rolling back;
- success_rate: successful / (successful + failed), in percent; cancelled and unfinished runs are left out;
- durations: finished runs (successful or failed) from started_at to finished_at, in seconds: the average
  and the nearest-rank p50/p90 (see `shipyard.reports.sqlexpr`);
- last_7_days / last_30_days: the same counts for the 7 and 30 days before the period's end, whatever the
  period's length (Hanbit's recentTrends), with the service/env filters applied;
- step kinds: steps of the period's runs; `failing_steps` counts failed steps by kind, `slowest_steps`
  averages finished deploy-phase steps by kind; `rollbacks_by_service` counts runs that ended rolled_back.

Every figure is one GROUP BY in the database (see the module `sqlexpr`), so the cost grows with the number
of services, environments and step kinds, not with the number of deployments.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Final

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from shipyard.domain import DeployState
from shipyard.reports.aggregates import Horizon, Split, add_groups, by_pair, horizon, rows_of, split
from shipyard.reports.histogram import merge, merged_percentile
from shipyard.reports.period import Period
from shipyard.reports.sqlexpr import (
    PERCENTILES,
    dialect_of,
    in_period,
    percentiles,
    ratio,
    reading,
    rounded,
    seconds_between,
)
from shipyard.store.models import DailyAggregate
from shipyard.store.models import Deployment as D
from shipyard.store.models import StepRecord as S

FAILED_STATES: Final = (DeployState.FAILED.value, DeployState.ROLLED_BACK.value)
FINISHED_STATES: Final = (DeployState.SUCCEEDED.value, *FAILED_STATES)
UNFINISHED_STATES: Final = (DeployState.QUEUED.value, DeployState.AWAITING_APPROVAL.value,
                            DeployState.IN_PROGRESS.value, DeployState.ROLLING_BACK.value)
TOP: Final = 5          # step kinds and services listed in the "where it hurts" parts


def _count(cond: Any) -> Any:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


def _counts_dict(total: int, ok: int, failed: int, cancelled: int) -> dict[str, Any]:
    return {"total": total, "successful": ok, "failed": failed, "cancelled": cancelled,
            "unfinished": total - ok - failed - cancelled, "success_rate": ratio(ok, ok + failed)}


def group_rows(session: Session, period: Period, service: str | None, env: str | None) -> list[dict[str, Any]]:
    """Counts and duration sums per (service, env) of the period's runs (one GROUP BY)."""
    dur = seconds_between(D.started_at, D.finished_at, dialect_of(session))
    timed = and_(D.state.in_(FINISHED_STATES), D.started_at.is_not(None), D.finished_at.is_not(None))
    stmt = (select(D.service, D.env, func.count().label("total"),
                   _count(D.state == DeployState.SUCCEEDED.value).label("ok"),
                   _count(D.state.in_(FAILED_STATES)).label("failed"),
                   _count(D.state == DeployState.ROLLED_BACK.value).label("rolled_back"),
                   _count(D.state == DeployState.CANCELLED.value).label("cancelled"),
                   _count(D.kind == "rollback").label("rollbacks"),
                   func.sum(case((timed, dur))).label("dur_sum"),
                   _count(timed).label("dur_n"))
            .where(in_period(period, service, env)).group_by(D.service, D.env).order_by(D.service, D.env))
    return [dict(r._mapping) for r in session.execute(stmt)]


def _recent(session: Session, period: Period, service: str | None, env: str | None,
            h: Horizon | None = None) -> dict[str, Any]:
    week, month = period.until - timedelta(days=7), period.until - timedelta(days=30)
    if h is not None and month < h.cut:
        return {"last_7_days": _window(session, split(week, period.until, h), service, env),
                "last_30_days": _window(session, split(month, period.until, h), service, env)}
    recent = D.created_at >= week
    stmt = select(
        func.count(), _count(D.state == DeployState.SUCCEEDED.value), _count(D.state.in_(FAILED_STATES)),
        _count(D.state == DeployState.CANCELLED.value),
        _count(recent), _count(and_(recent, D.state == DeployState.SUCCEEDED.value)),
        _count(and_(recent, D.state.in_(FAILED_STATES))), _count(and_(recent, D.state == DeployState.CANCELLED.value)),
    ).where(in_period(period, service, env, since=month))
    m_total, m_ok, m_failed, m_cancelled, w_total, w_ok, w_failed, w_cancelled = (
        int(v or 0) for v in session.execute(stmt).one())
    return {"last_7_days": _counts_dict(w_total, w_ok, w_failed, w_cancelled),
            "last_30_days": _counts_dict(m_total, m_ok, m_failed, m_cancelled)}


def _window(session: Session, part: Split, service: str | None, env: str | None) -> dict[str, Any]:
    """The counts of a window that reaches back before the horizon: raw rows after it, aggregates before."""
    total = ok = failed = cancelled = 0
    if part.raw is not None:
        stmt = select(func.count(), _count(D.state == DeployState.SUCCEEDED.value), _count(D.state.in_(FAILED_STATES)),
                      _count(D.state == DeployState.CANCELLED.value)).where(in_period(part.raw, service, env))
        total, ok, failed, cancelled = (int(v or 0) for v in session.execute(stmt).one())
    for a in rows_of(session, part, service, env, need=()):
        total, ok, cancelled = total + a.total, ok + a.succeeded, cancelled + a.cancelled
        failed += a.failed + a.rolled_back
    return _counts_dict(total, ok, failed, cancelled)


def _aggregate_groups(rows: list[DailyAggregate]) -> dict[tuple[str, str], dict[str, Any]]:
    """`group_rows`' figures from daily aggregates."""
    out = {}
    for key, rs in by_pair(rows).items():
        out[key] = {"total": sum(a.total for a in rs), "ok": sum(a.succeeded for a in rs),
                    "failed": sum(a.failed + a.rolled_back for a in rs), "rolled_back": sum(a.rolled_back for a in rs),
                    "cancelled": sum(a.cancelled for a in rs),
                    "rollbacks": sum(a.total for a in rs if a.kind == "rollback"),
                    "dur_sum": sum(a.dur_sum for a in rs), "dur_n": sum(a.dur_n for a in rs)}
    return out


def _duration_values(session: Session, period: Period, service: str | None, env: str | None) -> Any:
    dur = seconds_between(D.started_at, D.finished_at, dialect_of(session))
    timed = and_(D.state.in_(FINISHED_STATES), D.started_at.is_not(None), D.finished_at.is_not(None))
    # The state test stays out of WHERE: SQLite would pick the state index (all of history) over the
    # created_at range (one period).
    inner = select(case((timed, dur)).label("v")).where(in_period(period, service, env)).subquery()
    return select(inner.c.v).where(inner.c.v.is_not(None))


def _duration_percentiles(session: Session, period: Period | None, service: str | None, env: str | None,
                          aggs: list[DailyAggregate]) -> dict[int, float]:
    if not aggs and period is not None:
        return percentiles(session, _duration_values(session, period, service, env), ()).get((), {})
    # Partly pruned: the raw part's exact values with the aggregates' buckets (see `histogram`).
    exact = [float(v) for v in session.scalars(_duration_values(session, period, service, env))] \
        if period is not None else []
    hist: dict[str, int] = {}
    for a in aggs:
        merge(hist, a.dur_hist)
    found = {p: merged_percentile(exact, hist, p) for p in PERCENTILES}
    return {p: v for p, v in found.items() if v is not None}


def _steps(session: Session, period: Period | None, service: str | None, env: str | None,
           aggs: list[DailyAggregate]) -> dict[str, Any]:
    """Failed steps by kind and average duration of finished deploy-phase steps by kind (one GROUP BY)."""
    rows: list[dict[str, Any]] = []
    if period is not None:
        dur = seconds_between(S.started_at, S.ended_at, dialect_of(session))
        timed = and_(S.phase == "deploy", S.started_at.is_not(None), S.ended_at.is_not(None),
                     S.state.in_(("succeeded", "failed")))
        stmt = (select(S.kind, _count(S.state == "failed").label("failures"),
                       func.avg(case((timed, dur))).label("avg"), _count(timed).label("timed"))
                .join(D, D.id == S.deployment_id).where(in_period(period, service, env)).group_by(S.kind))
        rows = [dict(r._mapping) for r in session.execute(stmt)]
    if aggs:
        rows = _add_steps(rows, aggs)
    failing = sorted((r for r in rows if r["failures"]), key=lambda r: (-r["failures"], r["kind"]))
    slow = sorted((r for r in rows if r["timed"]), key=lambda r: (-float(r["avg"]), r["kind"]))
    return {"failed_steps": sum(int(r["failures"]) for r in rows),
            "failing_steps": [{"kind": r["kind"], "failures": int(r["failures"])} for r in failing[:TOP]],
            "slowest_steps": [{"kind": r["kind"], "average_seconds": rounded(r["avg"]), "count": int(r["timed"])}
                              for r in slow[:TOP]]}


def _add_steps(rows: list[dict[str, Any]], aggs: list[DailyAggregate]) -> list[dict[str, Any]]:
    """The raw part's step rows with the aggregates' [failures, timed, seconds] per step kind added."""
    sums = {r["kind"]: [int(r["failures"]), int(r["timed"]), float(r["avg"] or 0) * int(r["timed"])] for r in rows}
    for a in aggs:
        for kind, (failures, timed, seconds) in a.steps.items():
            into = sums.setdefault(kind, [0, 0, 0.0])
            into[0], into[1], into[2] = into[0] + failures, into[1] + timed, into[2] + seconds
    return [{"kind": k, "failures": f, "timed": t, "avg": sec / t if t else None} for k, (f, t, sec) in sums.items()]


def compute_stats(session: Session, period: Period, service: str | None = None,
                  env: str | None = None) -> dict[str, Any]:
    """The stats object (see the module docstring) from an open session."""
    h = horizon(session)
    part = split(period.since, period.until, h)
    aggs = rows_of(session, part, service, env, need=("dur_hist", "steps"))
    raw = group_rows(session, part.raw, service, env) if part.raw else []
    groups = add_groups(raw, _aggregate_groups(aggs)) if aggs else raw
    total = sum(int(g["total"]) for g in groups)
    ok = sum(int(g["ok"]) for g in groups)
    failed = sum(int(g["failed"]) for g in groups)
    cancelled = sum(int(g["cancelled"]) for g in groups)
    dur_sum = sum(float(g["dur_sum"] or 0) for g in groups)
    dur_n = sum(int(g["dur_n"]) for g in groups)
    pcts = _duration_percentiles(session, part.raw, service, env, aggs) if dur_n else {}
    by_service: dict[str, int] = {}
    for g in groups:
        by_service[g["service"]] = by_service.get(g["service"], 0) + int(g["rolled_back"])
    rollbacks = sorted(((s, n) for s, n in by_service.items() if n), key=lambda x: (-x[1], x[0]))
    return {
        **_counts_dict(total, ok, failed, cancelled),
        "kinds": {"deploy": total - sum(int(g["rollbacks"]) for g in groups),
                  "rollback": sum(int(g["rollbacks"]) for g in groups)},
        "average_duration_seconds": rounded(dur_sum / dur_n) if dur_n else None,
        "p50_duration_seconds": rounded(pcts.get(50)),
        "p90_duration_seconds": rounded(pcts.get(90)),
        **_recent(session, period, service, env, h),
        "by_service_env": [
            {"service": g["service"], "env": g["env"],
             **_counts_dict(int(g["total"]), int(g["ok"]), int(g["failed"]), int(g["cancelled"])),
             "rolled_back": int(g["rolled_back"]),
             "average_duration_seconds": rounded(float(g["dur_sum"]) / int(g["dur_n"])) if g["dur_n"] else None}
            for g in groups],
        "rollbacks_by_service": [{"service": s, "rolled_back": n} for s, n in rollbacks[:TOP]],
        **_steps(session, part.raw, service, env, aggs),
    }


async def stats(source: Any, period: Period, service: str | None = None, env: str | None = None) -> dict[str, Any]:
    """The stats object for `period` from a Store (read in a worker thread) or the caller's Session."""
    if isinstance(source, Session):
        return compute_stats(source, period, service, env)
    return await asyncio.to_thread(_stats_from_store, source, period, service, env)


def _stats_from_store(store: Any, period: Period, service: str | None, env: str | None) -> dict[str, Any]:
    with reading(store) as session:
        return compute_stats(session, period, service, env)
