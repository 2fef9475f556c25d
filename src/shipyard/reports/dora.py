"""The four keys of DORA per service and environment over a period.

Definitions (only runs created in the period count; see `shipyard.reports.period`):
- A deploy *reached* the env when it succeeded: its state is `succeeded`, or a rollback points at it
  (`rollback_of`; `shipyard rollback` sets it on its kind='rollback' run and only ever undoes a run that
  succeeded, which is then marked rolled_back). Rollback runs themselves are not changes and are never
  counted as deploys; they do count as restoring service.
- Deployment frequency: deploys (kind='deploy') that reached the env, per day and per week of the period.
- Lead time for changes: for each commit first carried to the env by such a deploy, from the commit's
  committer time to the deploy's end; median and p90 (`shipyard.reports.leadtime`, commits read from git by
  `shipyard.reports.commits`). Without a commit reader it is not computed (null figures).
- Change failure rate: deploys that failed, were rolled back by themselves (`failed`, `rolled_back`), or were
  rolled back later (a rollback points at them), divided by all finished deploys (succeeded, failed or
  rolled_back; cancelled ones never ran).
- Time to restore: for each such failed deploy, from its end to the end of the next run of the same
  service/env (deploy or rollback, in or after the period) that reached the env; the median. A failure with
  no good run after it yet is counted as `unrestored` and left out of the median.
Percentiles are nearest-rank (see `shipyard.reports.sqlexpr`); bands come from `shipyard.reports.bands`.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from shipyard.domain import DeployState
from shipyard.reports.aggregates import add_groups, by_pair, horizon, rows_of, split
from shipyard.reports.bands import (
    BANDS_SOURCE,
    BANDS_YEAR,
    change_failure_band,
    frequency_band,
    recovery_band,
)
from shipyard.reports.commits import CommitReader
from shipyard.reports.histogram import merge, merged_percentile
from shipyard.reports.leadtime import CarriedDeploy, lead_times, summarize
from shipyard.reports.period import Period
from shipyard.reports.sqlexpr import dialect_of, in_period, ratio, reading, rounded, seconds_between
from shipyard.store.models import DailyAggregate
from shipyard.store.models import Deployment as D

RESTORE_WINDOW = timedelta(days=1)
SUCCEEDED = DeployState.SUCCEEDED.value
FAILED_STATES = (DeployState.FAILED.value, DeployState.ROLLED_BACK.value)
FINISHED_STATES = (SUCCEEDED, *FAILED_STATES)


def _pointed() -> Any:
    """Ids of runs a rollback undid (or tried to): every `rollback_of` in the table."""
    r = aliased(D)
    return select(r.rollback_of).where(r.rollback_of.is_not(None))


def reached(table: Any = D) -> ColumnElement[bool]:
    return or_(table.state == SUCCEEDED, table.id.in_(_pointed()))


def change_failed(table: Any = D) -> ColumnElement[bool]:
    return or_(table.state.in_(FAILED_STATES), table.id.in_(_pointed()))


def _count(cond: Any) -> Any:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


def _counts(session: Session, period: Period, service: str | None, env: str | None) -> list[dict[str, Any]]:
    stmt = (select(D.service, D.env, _count(reached()).label("deploys"), _count(change_failed()).label("failures"),
                   _count(D.state.in_(FINISHED_STATES)).label("finished"))
            .where(in_period(period, service, env), D.kind == "deploy")
            .group_by(D.service, D.env).order_by(D.service, D.env))
    return [dict(r._mapping) for r in session.execute(stmt)]


def _restore_values(session: Session, period: Period, service: str | None, env: str | None) -> Any:
    """A select of (service, env, v = seconds to restore or NULL) for each failed deploy of the period.

    One window pass: runs of each service/env newest first; for each, the smallest end time among the
    good runs already passed (those that ended later) is the next good end."""
    good = and_(D.finished_at.is_not(None), reached())
    failure = and_(D.kind == "deploy", change_failed(), in_period(period, service, env))
    # On SQLite a bare (service, env) partition lets the planner walk all of history in the order of the
    # (service, env, created_at) index to save a sort; an expression takes that index out of the choice
    # and leaves the finished_at range (one period) to be read and sorted.
    sqlite = dialect_of(session) == "sqlite"
    part = (D.service.concat(""), D.env) if sqlite else (D.service, D.env)
    base = select(D.service, D.env, D.finished_at,
                  case((failure, 1), else_=0).label("failure"),
                  func.min(case((good, D.finished_at))).over(
                      partition_by=part, order_by=(D.finished_at.desc(), D.id.desc()),
                      rows=(None, -1)).label("next_good"))
    # Only time and names in WHERE: a state test there makes SQLite read all of history by the state index.
    conds = [D.finished_at >= period.since]
    if service is not None:
        conds.append(D.service == service)
    if env is not None:
        conds.append(D.env == env)
    w = base.where(*conds).subquery()
    v = seconds_between(w.c.finished_at, w.c.next_good, dialect_of(session))
    return select(w.c.service, w.c.env, v.label("v")).where(w.c.failure == 1)


def _restores(session: Session, period: Period, service: str | None, env: str | None) -> dict[str, Any]:
    """Per (service, env): (restored, unrestored) counts and the median; the median over all of them.

    One query: the failures' restore times are ranked within their service/env and over all, the
    unrestored ones (no time) in a partition of their own so they never take a rank."""
    vals = _restore_values(session, period, service, env).subquery()
    unrestored = case((vals.c.v.is_(None), 1), else_=0)
    ranked = select(
        vals.c.service, vals.c.env, vals.c.v, unrestored.label("u"),
        func.row_number().over(partition_by=(vals.c.service, vals.c.env, unrestored), order_by=vals.c.v).label("rg"),
        func.count().over(partition_by=(vals.c.service, vals.c.env, unrestored)).label("ng"),
        func.row_number().over(partition_by=unrestored, order_by=vals.c.v).label("ra"),
        func.count().over(partition_by=unrestored).label("na")).subquery()
    r = ranked.c
    stmt = (select(r.service, r.env, func.sum(r.u), func.count(),
                   func.max(case((and_(r.u == 0, r.rg == (50 * r.ng + 99) // 100), r.v))),
                   func.max(case((and_(r.u == 0, r.ra == (50 * r.na + 99) // 100), r.v))))
            .group_by(r.service, r.env))
    restored: dict[tuple[str, str], tuple[int, int]] = {}
    median: dict[tuple[str, str], float] = {}
    overall: dict[int, float] = {}
    for svc, env_name, unrest, total, med, med_all in session.execute(stmt):
        restored[(svc, env_name)] = (int(total) - int(unrest), int(unrest))
        if med is not None:
            median[(svc, env_name)] = float(med)
        if med_all is not None:
            overall[50] = float(med_all)
    return {"restored": restored, "median": median, "overall": overall}


def restore_seconds(session: Session, failures: list[tuple[str, str, datetime, str]]) -> list[float | None]:
    """For each failure (service, env, end, id): seconds from its end to the end of the next run of the same
    service/env that reached it (deploy or rollback), in DORA's order (end time, then id); None if none yet.

    Failures are taken in spans (ends less than RESTORE_WINDOW apart); the good runs of each span and the
    window after it are read once and searched here. A failure not restored within its span's window asks
    the database alone (rare: a service that stayed broken for a day)."""
    if not failures:
        return []
    spans: list[list[datetime]] = []
    for t in sorted({f[2] for f in failures}):
        if spans and t <= spans[-1][1]:
            spans[-1][1] = t + RESTORE_WINDOW
        else:
            spans.append([t, t + RESTORE_WINDOW])
    goods: dict[tuple[int, str, str], list[tuple[datetime, str]]] = {}
    for n, (lo, hi) in enumerate(spans):
        stmt = select(D.service, D.env, D.finished_at, D.id).where(D.finished_at >= lo, D.finished_at < hi,
                                                                   case((reached(), 1), else_=0) == 1)
        for service, env, end, run_id in session.execute(stmt):
            if end is not None:
                goods.setdefault((n, service, env), []).append((end, run_id))
    for runs in goods.values():
        runs.sort()
    starts = [lo for lo, _ in spans]
    out: list[float | None] = []
    for service, env, end, run_id in failures:
        n = bisect.bisect_right(starts, end) - 1
        runs = goods.get((n, service, env), [])
        i = bisect.bisect_right(runs, (end, run_id))
        found = runs[i][0] if i < len(runs) else session.scalars(
            select(D.finished_at).where(D.finished_at >= spans[n][1], D.service == service, D.env == env,
                                        case((reached(), 1), else_=0) == 1)
            .order_by(D.finished_at, D.id).limit(1)).first()
        out.append((found - end).total_seconds() if found is not None else None)
    return out


def _raw_failures(session: Session, raw: Period, service: str | None,
                  env: str | None) -> list[tuple[str, str, datetime, str]]:
    """The raw part's failed deploys that ended, as `restore_seconds` takes them.

    The failure test is wrapped in a CASE: bare, it lets SQLite read all of history by the state index
    instead of the period's created_at ranges."""
    stmt = select(D.service, D.env, D.finished_at, D.id).where(
        in_period(raw, service, env), D.kind == "deploy", case((change_failed(), 1), else_=0) == 1,
        D.finished_at.is_not(None))
    return [(svc, env_name, end, run_id) for svc, env_name, end, run_id in session.execute(stmt) if end is not None]


def _mixed_restores(session: Session, raw: Period | None, service: str | None, env: str | None,
                    aggs: list[DailyAggregate]) -> dict[str, Any]:
    """`_restores` for a period partly pruned: the raw part's exact restore times with the aggregates'
    histograms (medians then within `histogram.RESOLUTION`)."""
    exact: dict[tuple[str, str], list[float]] = {}
    counts: dict[tuple[str, str], list[int]] = {}
    if raw is not None:
        if raw.gap is not None:     # a head and a tail around aggregated days: look up each failure's restore
            failures = _raw_failures(session, raw, service, env)
            values: Any = [(f[0], f[1], v) for f, v in zip(failures, restore_seconds(session, failures), strict=True)]
        else:                       # one raw range after the horizon: one window pass
            values = session.execute(_restore_values(session, raw, service, env))
        for svc, env_name, v in values:
            into = counts.setdefault((svc, env_name), [0, 0])
            if v is None:
                into[1] += 1
            else:
                into[0] += 1
                exact.setdefault((svc, env_name), []).append(float(v))
    hists: dict[tuple[str, str], dict[str, int]] = {}
    for key, rows in by_pair(aggs).items():
        into = counts.setdefault(key, [0, 0])
        for a in rows:
            into[0], into[1] = into[0] + a.restored, into[1] + a.unrestored
            merge(hists.setdefault(key, {}), a.restore_hist)
    median = {k: m for k in counts if (m := merged_percentile(exact.get(k, []), hists.get(k, {}), 50)) is not None}
    everything: dict[str, int] = {}
    for h in hists.values():
        merge(everything, h)
    overall = merged_percentile([v for vs in exact.values() for v in vs], everything, 50)
    return {"restored": {k: (r, u) for k, (r, u) in counts.items()}, "median": median,
            "overall": {50: overall} if overall is not None else {}}


def _aggregate_counts(aggs: list[DailyAggregate]) -> dict[tuple[str, str], dict[str, Any]]:
    return {key: {"deploys": sum(a.reached for a in rows), "failures": sum(a.change_failed for a in rows),
                  "finished": sum(a.succeeded + a.failed + a.rolled_back for a in rows)}
            for key, rows in by_pair(aggs).items()}


def _restore_dict(restored: int, unrestored: int, median: float | None) -> dict[str, Any]:
    return {"restored": restored, "unrestored": unrestored, "median_seconds": rounded(median),
            "band": recovery_band(median)}


def _frequency_dict(deploys: int, period: Period) -> dict[str, Any]:
    per_day = deploys / period.days
    return {"deploys": deploys, "per_day": round(per_day, 4), "per_week": round(per_day * 7, 4),
            "band": frequency_band(per_day)}


def _cfr_dict(failures: int, finished: int) -> dict[str, Any]:
    rate = ratio(failures, finished)
    return {"failures": failures, "finished": finished, "rate": rate, "band": change_failure_band(rate)}


def carried_deploys(session: Session, period: Period, service: str | None,
                    env: str | None) -> list[dict[str, Any]]:
    """The period's deploys that reached their env, oldest end first, with what each must exclude from its
    commits: its previous revision, the revisions of the earlier ones, and of the last one before the period."""
    stmt = (select(D.id, D.service, D.env, D.revision, D.previous_revision, D.finished_at)
            .where(in_period(period, service, env), D.kind == "deploy", reached(), D.finished_at.is_not(None))
            .order_by(D.finished_at, D.id))
    rows = [dict(r._mapping) for r in session.execute(stmt)]
    carried: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        key = (row["service"], row["env"])
        if key not in carried:
            before = session.scalars(
                select(D.revision).where(D.service == key[0], D.env == key[1], D.kind == "deploy",
                                         D.created_at < period.since, reached(), D.finished_at.is_not(None))
                .order_by(D.finished_at.desc(), D.id.desc()).limit(1)).first()
            carried[key] = [before] if before else []
        row["exclude"] = [r for r in (row["previous_revision"], *carried[key]) if r]
        carried[key].append(row["revision"])
    return rows


async def _read_commits(rows: Sequence[dict[str, Any]], reader: CommitReader) -> list[CarriedDeploy]:
    found = await asyncio.gather(*(reader.commits(r["service"], r["revision"], r["exclude"]) for r in rows))
    return [CarriedDeploy(r["id"], r["service"], r["env"], r["finished_at"], commits)
            for r, commits in zip(rows, found, strict=True)]


def compute_dora(session: Session, period: Period, service: str | None = None, env: str | None = None,
                 lead: tuple[dict[tuple[str, str], dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The DORA object from an open session; `lead` is what `leadtime.lead_times` made (None: not computed)."""
    part = split(period.since, period.until, horizon(session))
    aggs = rows_of(session, part, service, env, need=("restore_hist",), kind="deploy")
    counts = _counts(session, part.raw, service, env) if part.raw is not None else []
    if aggs:
        counts = add_groups(counts, _aggregate_counts(aggs))
    restores: dict[str, Any] = {"restored": {}, "median": {}, "overall": {}}
    if any(c["failures"] for c in counts):
        restores = _mixed_restores(session, part.raw, service, env, aggs) if aggs else \
            _restores(session, part.raw or period, service, env)
    lead_per, lead_all = lead if lead is not None else ({}, None)
    empty_lead = summarize([], 0, 0) if lead is not None else None
    groups = []
    for c in counts:
        key = (c["service"], c["env"])
        restored, unrestored = restores["restored"].get(key, (0, 0))
        groups.append({"service": key[0], "env": key[1],
                       "deployment_frequency": _frequency_dict(int(c["deploys"]), period),
                       "lead_time": lead_per.get(key, empty_lead),
                       "change_failure_rate": _cfr_dict(int(c["failures"]), int(c["finished"])),
                       "time_to_restore": _restore_dict(restored, unrestored, restores["median"].get(key))})
    restored_all = sum(r for r, _ in restores["restored"].values())
    unrestored_all = sum(u for _, u in restores["restored"].values())
    overall = {"deployment_frequency": _frequency_dict(sum(int(c["deploys"]) for c in counts), period),
               "lead_time": lead_all,
               "change_failure_rate": _cfr_dict(sum(int(c["failures"]) for c in counts),
                                                sum(int(c["finished"]) for c in counts)),
               "time_to_restore": _restore_dict(restored_all, unrestored_all, restores["overall"].get(50))}
    return {"bands_year": BANDS_YEAR, "bands_source": BANDS_SOURCE, "overall": overall, "by_service_env": groups}


async def dora(source: Any, period: Period, service: str | None = None, env: str | None = None, *,
               commits: CommitReader | None = None) -> dict[str, Any]:
    """The DORA object for `period` from a Store (read in a worker thread) or the caller's Session.

    With `commits`, lead time is read from git (one or two git commands per deploy that reached an env)."""
    if isinstance(source, Session):
        rows = carried_deploys(source, period, service, env) if commits is not None else []
        lead = lead_times(await _read_commits(rows, commits)) if commits is not None else None
        return compute_dora(source, period, service, env, lead)

    def carried() -> list[dict[str, Any]]:
        with reading(source) as s:
            return carried_deploys(s, period, service, env)

    def rest(lead: Any) -> dict[str, Any]:
        with reading(source) as s:
            return compute_dora(s, period, service, env, lead)

    lead = None
    if commits is not None:
        lead = lead_times(await _read_commits(await asyncio.to_thread(carried), commits))
    return await asyncio.to_thread(rest, lead)
