"""Folding closed days ahead of any prune, so stats and DORA over long periods read a few aggregate rows.

Reports read the days before `HistoryHorizon.folded_before` from `daily_aggregates` and the rest from raw
runs (`reports.aggregates.horizon`). This module keeps that horizon close to today: every closed UTC day is
folded once (`retention.fold_day`, the same fold a prune uses), oldest first, one transaction a day; a day
changed after its fold (`store.fold_marks`) is read raw again until it is folded anew here.

`plan_folds` is pure. A closed day with unfinished runs is not folded until it is SETTLE past its end (a
run that crosses midnight finishes first; a stuck one does not hold the horizon back for good: when it
ends, its day is marked and folded again). Run by the daemon's `aggregates` work (cli/serve.py) and
before `shipyard report` reads; stopped at any point, every day is read from complete aggregates or from
complete raw rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, case, delete, func, select
from sqlalchemy.orm import Session

from shipyard.domain import DeployState
from shipyard.reports.dora import change_failed, reached, restore_seconds
from shipyard.reports.histogram import histogram
from shipyard.reports.pipeline import fold_figures, pipeline_times
from shipyard.reports.sqlexpr import dialect_of, seconds_between
from shipyard.reports.stats import FINISHED_STATES, UNFINISHED_STATES
from shipyard.store import Store
from shipyard.store.fold_marks import HORIZON_ID, floor_day
from shipyard.store.models import DailyAggregate, FoldDirty, HistoryHorizon, StepRecord
from shipyard.store.models import Deployment as D
from shipyard.store.sql import insert_ignore, utcnow

DAY: Final = timedelta(days=1)
SETTLE: Final = timedelta(hours=6)

Checkpoint = Callable[[str], None]


@dataclass(frozen=True)
class FoldPlan:
    refold: tuple[datetime, ...]        # folded days marked changed since, oldest first
    extend: tuple[datetime, ...]        # closed days not folded yet, from folded_before on, oldest first


def plan_folds(now: datetime, *, folded_before: datetime | None, pruned_before: datetime | None,
               oldest_raw: datetime | None, first_unfinished: datetime | None,
               dirty: Iterable[datetime], limit: int | None = None) -> FoldPlan:
    """Which days a fold at `now` folds. `oldest_raw`: the oldest run created at or after the pruned
    horizon; `first_unfinished`: the creation time of the oldest unfinished run from where folding goes on."""
    today = floor_day(now)
    start = folded_before
    if start is None and oldest_raw is not None:
        start = max(floor_day(oldest_raw), pruned_before) if pruned_before is not None else floor_day(oldest_raw)
    refold = tuple(sorted({d for d in dirty if start is not None and d < start
                           and (pruned_before is None or d >= pruned_before)}))
    extend: list[datetime] = []
    day = start
    while day is not None and day + DAY <= today and (limit is None or len(extend) < limit):
        blocked = first_unfinished is not None and first_unfinished < day + DAY
        if blocked and now < day + DAY + SETTLE:
            break
        extend.append(day)
        day += DAY
    return FoldPlan(refold, tuple(extend))


@dataclass
class FoldResult:
    refolded: int = 0
    folded: int = 0
    runs: int = 0
    folded_before: datetime | None = None

    def to_dict(self) -> dict[str, object]:
        return {"refolded": self.refolded, "folded": self.folded, "runs": self.runs,
                "folded_before": self.folded_before.isoformat() if self.folded_before else None}


def _empty(day: datetime, service: str, env: str, kind: str, now: datetime) -> DailyAggregate:
    return DailyAggregate(day=day, service=service, env=env, kind=kind, total=0, succeeded=0, failed=0,
                          rolled_back=0, cancelled=0, reached=0, change_failed=0, restored=0, unrestored=0,
                          dur_sum=0.0, dur_n=0, dur_hist={}, restore_hist={}, steps={}, pipeline=fold_figures([]),
                          folded_at=now)


def fold_day(session: Session, day: datetime, now: datetime | None = None) -> int:
    """(Re)compute the aggregate rows of `day` from its raw runs; returns how many runs it folded."""
    now = now or utcnow()
    dialect = dialect_of(session)
    in_day = and_(D.created_at >= day, D.created_at < day + DAY)
    timed = and_(D.state.in_(FINISHED_STATES), D.started_at.is_not(None), D.finished_at.is_not(None))
    failure = and_(D.kind == "deploy", change_failed(), D.finished_at.is_not(None))
    stmt = select(D.service, D.env, D.kind, D.state, case((reached(), 1), else_=0),
                  case((change_failed(), 1), else_=0), case((failure, 1), else_=0),
                  case((timed, seconds_between(D.started_at, D.finished_at, dialect))), D.finished_at,
                  D.id).where(in_day)
    rows: dict[tuple[str, str, str], DailyAggregate] = {}
    durs: dict[tuple[str, str, str], list[float]] = {}
    failures: list[tuple[str, str, datetime, str]] = []
    folded = 0
    for service, env, kind, state, got_there, cf, failed, dur, end, run_id in session.execute(stmt):
        key = (service, env, kind)
        a = rows.get(key) or rows.setdefault(key, _empty(day, service, env, kind, now))
        folded += 1
        a.total += 1
        a.succeeded += state == DeployState.SUCCEEDED.value
        a.failed += state == DeployState.FAILED.value
        a.rolled_back += state == DeployState.ROLLED_BACK.value
        a.cancelled += state == DeployState.CANCELLED.value
        a.reached += int(got_there)
        a.change_failed += int(cf)
        if dur is not None:
            a.dur_sum += float(dur)
            a.dur_n += 1
            durs.setdefault(key, []).append(float(dur))
        if failed:     # time to restore counts only failures that ended (as DORA's window does)
            failures.append((service, env, end, run_id))
    restores: dict[tuple[str, str, str], list[float]] = {}
    for (service, env, _end, _id), seconds in zip(failures, restore_seconds(session, failures), strict=True):
        a = rows[(service, env, "deploy")]
        if seconds is None:
            a.unrestored += 1
        else:
            a.restored += 1
            restores.setdefault((service, env, "deploy"), []).append(seconds)
    _fold_steps(session, in_day, rows)
    times: dict[tuple[str, str, str], list[tuple[str, float]]] = {}
    for run_id, service, env, kind, seconds in pipeline_times(session, in_day):
        times.setdefault((service, env, kind), []).append((run_id, seconds))
    for key, ts in times.items():
        rows[key].pipeline = fold_figures(ts)
    for key, a in rows.items():
        a.dur_hist = histogram(durs.get(key, []))
        a.restore_hist = histogram(restores.get(key, []))
    session.execute(delete(DailyAggregate).where(DailyAggregate.day == day))
    session.add_all(rows.values())
    return folded


def _fold_steps(session: Session, in_day: Any, rows: dict[tuple[str, str, str], DailyAggregate]) -> None:
    """Step kind -> [failed steps, timed deploy-phase steps, their seconds], as `stats` counts them."""
    s = StepRecord
    dur = seconds_between(s.started_at, s.ended_at, dialect_of(session))
    timed = and_(s.phase == "deploy", s.started_at.is_not(None), s.ended_at.is_not(None),
                 s.state.in_(("succeeded", "failed")))
    stmt = (select(D.service, D.env, D.kind, s.kind, func.sum(case((s.state == "failed", 1), else_=0)),
                   func.sum(case((timed, 1), else_=0)), func.sum(case((timed, dur))))
            .join(D, D.id == s.deployment_id).where(in_day).group_by(D.service, D.env, D.kind, s.kind))
    per: dict[tuple[str, str, str], dict[str, list[Any]]] = {}
    for service, env, kind, step_kind, failures, timed_n, seconds in session.execute(stmt):
        per.setdefault((service, env, kind), {})[step_kind] = [int(failures or 0), int(timed_n or 0),
                                                               float(seconds or 0)]
    for key, steps in per.items():
        rows[key].steps = steps


def fold_locked(session: Session, day: datetime, now: datetime, *, extend: bool) -> int:
    """Fold `day` holding the horizon row exclusively (see `fold_marks`): its marks seen before the read go,
    and with `extend` the folded horizon moves past it. Returns how many runs it folded."""
    h = session.get(HistoryHorizon, HORIZON_ID, with_for_update=True, populate_existing=True)
    seen = session.scalar(select(func.max(FoldDirty.id)))
    runs = fold_day(session, day, now)
    if seen is not None:
        session.execute(delete(FoldDirty).where(FoldDirty.day == day, FoldDirty.id <= seen))
    if extend and h is not None and (h.folded_before is None or h.folded_before <= day):
        h.folded_before, h.updated_at = day + DAY, now
    return runs


def ensure_horizon(store: Store, now: datetime) -> None:
    """The horizon row exists before any fold locks it (marks lock it in share mode: it must be there)."""
    with store.session() as s:
        insert_ignore(s, HistoryHorizon, {"id": HORIZON_ID, "pruned_before": None, "folded_before": None,
                                          "updated_at": now})


def _plan(store: Store, now: datetime, limit: int | None) -> FoldPlan:
    with store.session(readonly=True) as s:
        row = s.execute(select(HistoryHorizon.pruned_before, HistoryHorizon.folded_before)
                        .where(HistoryHorizon.id == HORIZON_ID)).first()
        pruned_before, folded_before = row if row is not None else (None, None)
        since = [D.created_at >= pruned_before] if pruned_before is not None else []
        oldest = s.scalar(select(func.min(D.created_at)).where(*since))
        from_day = folded_before or (floor_day(oldest) if oldest is not None else None)
        first_unfinished = None
        if from_day is not None:
            first_unfinished = s.scalar(select(func.min(D.created_at))
                                        .where(D.created_at >= from_day, D.state.in_(UNFINISHED_STATES)))
        dirty = list(s.scalars(select(FoldDirty.day).distinct()))
    return plan_folds(now, folded_before=folded_before, pruned_before=pruned_before, oldest_raw=oldest,
                      first_unfinished=first_unfinished, dirty=dirty, limit=limit)


class OutOfTime(Exception):
    pass


def fold_closed(store: Store, *, now: datetime | None = None, limit: int | None = None,
                checkpoint: Checkpoint | None = None, budget: float | None = None) -> FoldResult:
    """Refold the changed days and fold the closed days not folded yet (at most `limit` of them; with
    `budget`, only for about that many seconds: what is left is read raw, as before)."""
    now = now or utcnow()
    deadline = time.monotonic() + budget if budget is not None else None

    def check(what: str) -> None:
        if checkpoint is not None:
            checkpoint(what)
        if deadline is not None and time.monotonic() > deadline:
            raise OutOfTime

    ensure_horizon(store, now)
    plan = _plan(store, now, limit)
    result = FoldResult()
    for day, extend in [*((d, False) for d in plan.refold), *((d, True) for d in plan.extend)]:
        try:
            check(f"fold {day:%Y-%m-%d}")
        except OutOfTime:
            break
        with store.session() as s:
            result.runs += fold_locked(s, day, now, extend=extend)
        if extend:
            result.folded += 1
        else:
            result.refolded += 1
    with store.session() as s:
        h = s.get(HistoryHorizon, HORIZON_ID)
        if h is not None and h.pruned_before is not None:     # pruned days cannot be folded again
            s.execute(delete(FoldDirty).where(FoldDirty.day < h.pruned_before))
        result.folded_before = h.folded_before if h is not None else None
    return result
