"""Retention: fold whole days of history into `daily_aggregates`, then delete their raw rows in batches.

`plan_prune` is pure: from the time now, how old is too old, the current horizon and the oldest raw run it
says which day is the cutoff (a midnight UTC: whole days only, so every aggregate row is a complete day)
and which days must be folded. `prune` executes the plan, each step its own short transaction so that
deploys and the API never wait long behind it:

1. fold each day (one transaction a day; recomputing a day replaces its rows, so a repeated or resumed
   fold is harmless);
2. move the horizon (`history_horizon`) to the cutoff: from here on reports read those days from the
   aggregates, and the raw rows still there are ignored by them;
3. delete, `batch` runs at a time: the runs created before the cutoff with their steps and events; then
   events without a run older than the cutoff; then outbox rows delivered before the cutoff; then what
   GitOps recorded before the cutoff (its triggers, and the webhook delivery ids kept to refuse replays:
   a provider redelivers within days, never after the retention).

Stopped at any point (killed, an error, the daemon stopping), every day is read either from its complete
raw rows or from its complete aggregate, and the next prune carries on where this one stopped.

Kept whatever their age: unfinished runs (queued, awaiting approval, in progress, rolling back: recovery
and the queue still need them) and the two newest succeeded runs of every service/env (the current and
the previous good release, what `shipyard rollback` goes back to). Kept runs of folded days are counted
in the aggregates as they were at fold time; a later change to them (a stale run cancelled by recovery)
does not change the figures of that day. Undelivered outbox rows (pending or failed) are never deleted.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, case, delete, func, or_, select, tuple_
from sqlalchemy.orm import Session

from shipyard.domain import DeployState
from shipyard.errors import UsageError
from shipyard.reports.aggregates import HORIZON_ID, horizon
from shipyard.reports.dora import change_failed, reached
from shipyard.reports.histogram import histogram
from shipyard.reports.sqlexpr import dialect_of, seconds_between
from shipyard.reports.stats import FINISHED_STATES
from shipyard.store import Store
from shipyard.store.deployments import succeeded_history
from shipyard.store.models import (
    DailyAggregate,
    Event,
    GitDelivery,
    GitTrigger,
    HistoryHorizon,
    OutboxEntry,
    StepRecord,
)
from shipyard.store.models import Deployment as D
from shipyard.store.outbox import DELIVERED
from shipyard.store.sql import rowcount, utcnow

DAY: Final = timedelta(days=1)
BATCH: Final = 2000
RESTORE_WINDOW: Final = timedelta(days=7)
MIN_RETENTION: Final = DAY.total_seconds()
KEEP_GOOD: Final = 2            # the current and the previous good release of each service/env
UNFINISHED: Final = (DeployState.QUEUED.value, DeployState.AWAITING_APPROVAL.value, DeployState.IN_PROGRESS.value,
                     DeployState.ROLLING_BACK.value)

Checkpoint = Callable[[str], None]      # called before every transaction; may raise to stop the prune


def floor_day(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class PrunePlan:
    cutoff: datetime                    # runs created before it go (but the kept ones)
    horizon: datetime                   # where the horizon will be: max(cutoff, the current one)
    fold: tuple[datetime, ...]          # the days to fold, oldest first


def plan_prune(now: datetime, older_than: float, current: datetime | None, oldest_raw: datetime | None) -> PrunePlan:
    """What a prune at `now` of everything older than `older_than` seconds must do, given the current
    horizon and the oldest run created at or after it (None: no such run)."""
    if older_than < MIN_RETENTION:
        raise UsageError(f"retention must be at least 1d (whole days are folded), not {older_than:g}s")
    cutoff = floor_day(now - timedelta(seconds=older_than))
    days: list[datetime] = []
    if oldest_raw is not None:
        day = floor_day(oldest_raw)
        if current is not None:
            day = max(day, current)
        while day < cutoff:
            days.append(day)
            day += DAY
    return PrunePlan(cutoff, max(cutoff, current) if current else cutoff, tuple(days))


def _restore_seconds(session: Session, failures: list[tuple[str, str, datetime, str]]) -> list[float | None]:
    """For each failure (service, env, end, id): seconds from its end to the end of the next run of the same
    service/env that reached it (deploy or rollback), in DORA's order (end time, then id); None if none yet.

    The good runs of the week after the first failure are read once and searched here; a failure not
    restored within it asks the database alone (rare: a service that stayed broken for a week)."""
    if not failures:
        return []
    lo = min(f[2] for f in failures)
    hi = lo + RESTORE_WINDOW
    goods: dict[tuple[str, str], list[tuple[datetime, str]]] = {}
    stmt = select(D.service, D.env, D.finished_at, D.id).where(D.finished_at >= lo, D.finished_at < hi,
                                                               case((reached(), 1), else_=0) == 1)
    for service, env, end, run_id in session.execute(stmt):
        if end is not None:
            goods.setdefault((service, env), []).append((end, run_id))
    for runs in goods.values():
        runs.sort()
    out: list[float | None] = []
    for service, env, end, run_id in failures:
        runs = goods.get((service, env), [])
        i = bisect.bisect_right(runs, (end, run_id))
        found = runs[i][0] if i < len(runs) else session.scalars(
            select(D.finished_at).where(D.finished_at >= hi, D.service == service, D.env == env,
                                        case((reached(), 1), else_=0) == 1)
            .order_by(D.finished_at, D.id).limit(1)).first()
        out.append((found - end).total_seconds() if found is not None else None)
    return out


def _empty(day: datetime, service: str, env: str, kind: str, now: datetime) -> DailyAggregate:
    return DailyAggregate(day=day, service=service, env=env, kind=kind, total=0, succeeded=0, failed=0,
                          rolled_back=0, cancelled=0, reached=0, change_failed=0, restored=0, unrestored=0,
                          dur_sum=0.0, dur_n=0, dur_hist={}, restore_hist={}, steps={}, folded_at=now)


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
    for (service, env, _end, _id), seconds in zip(failures, _restore_seconds(session, failures), strict=True):
        a = rows[(service, env, "deploy")]
        if seconds is None:
            a.unrestored += 1
        else:
            a.restored += 1
            restores.setdefault((service, env, "deploy"), []).append(seconds)
    _fold_steps(session, in_day, rows)
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


def kept_ids(session: Session, cutoff: datetime) -> set[str]:
    """Runs older than the cutoff that are kept: unfinished ones, and each service/env's current and
    previous good release (`deployments.succeeded_history`, what rollback reads)."""
    kept = set(session.scalars(select(D.id).where(D.created_at < cutoff, D.state.in_(UNFINISHED))))
    for service, env in session.execute(select(D.service, D.env).distinct()):
        kept.update(r.id for r in succeeded_history(session, service, env, limit=KEEP_GOOD) if r.created_at < cutoff)
    return kept


def _move_horizon(session: Session, to: datetime, now: datetime) -> None:
    row = session.get(HistoryHorizon, HORIZON_ID)
    if row is None:
        session.add(HistoryHorizon(id=HORIZON_ID, pruned_before=to, updated_at=now))
    elif row.pruned_before < to:
        row.pruned_before, row.updated_at = to, now


@dataclass
class PruneResult:
    cutoff: datetime
    horizon: datetime
    dry_run: bool
    days_folded: int = 0
    runs_folded: int = 0
    kept: int = 0
    deleted: dict[str, int] = field(default_factory=lambda: {"deployments": 0, "steps": 0, "events": 0,
                                                             "outbox": 0, "git_triggers": 0,
                                                             "git_deliveries": 0})

    def to_dict(self) -> dict[str, Any]:
        return {"cutoff": self.cutoff.isoformat(), "horizon": self.horizon.isoformat(), "dry_run": self.dry_run,
                "days_folded": self.days_folded, "runs_folded": self.runs_folded, "kept": self.kept,
                "deleted" if not self.dry_run else "would_delete": dict(self.deleted)}


def _plan(store: Store, older_than: float, now: datetime) -> PrunePlan:
    with store.session(readonly=True) as s:
        current = horizon(s)
        since = [D.created_at >= current] if current is not None else []
        oldest = s.scalars(select(func.min(D.created_at)).where(*since)).first()
        return plan_prune(now, older_than, current, oldest)


def _old_events(cutoff: datetime) -> Any:
    return and_(Event.deployment_id.is_(None), Event.at < cutoff)


def _old_outbox(cutoff: datetime) -> Any:
    return and_(OutboxEntry.state == DELIVERED, OutboxEntry.delivered_at < cutoff)


def _old_deliveries(cutoff: datetime) -> Any:
    return GitDelivery.received_at < cutoff


def _pruned_runs(cutoff: datetime, kept: set[str]) -> Any:
    conds = [D.created_at < cutoff, D.state.not_in(UNFINISHED)]
    return and_(*conds, D.id.not_in(sorted(kept))) if kept else and_(*conds)


def _dry_run(store: Store, plan: PrunePlan, result: PruneResult) -> PruneResult:
    with store.session(readonly=True) as s:
        kept = kept_ids(s, plan.cutoff)
        runs = select(D.id).where(_pruned_runs(plan.cutoff, kept))
        result.kept = len(kept)
        result.days_folded = len(plan.fold)
        result.deleted = {
            "deployments": int(s.scalar(select(func.count()).select_from(runs.subquery())) or 0),
            "steps": int(s.scalar(select(func.count()).where(StepRecord.deployment_id.in_(runs))) or 0),
            "events": int(s.scalar(select(func.count()).where(or_(Event.deployment_id.in_(runs),
                                                                  _old_events(plan.cutoff)))) or 0),
            "outbox": int(s.scalar(select(func.count()).where(_old_outbox(plan.cutoff))) or 0),
            "git_triggers": int(s.scalar(select(func.count()).where(GitTrigger.created_at < plan.cutoff)) or 0),
            "git_deliveries": int(s.scalar(select(func.count()).where(_old_deliveries(plan.cutoff))) or 0)}
    return result


def prune(store: Store, older_than: float, *, now: datetime | None = None, dry_run: bool = False,
          batch: int = BATCH, checkpoint: Checkpoint | None = None) -> PruneResult:
    """Prune everything created more than `older_than` seconds before `now` (see the module docstring)."""
    now = now or utcnow()
    check = checkpoint or (lambda _what: None)
    plan = _plan(store, older_than, now)
    result = PruneResult(plan.cutoff, plan.horizon, dry_run)
    if dry_run:
        return _dry_run(store, plan, result)
    for day in plan.fold:
        check(f"fold {day:%Y-%m-%d}")
        with store.session() as s:
            result.runs_folded += fold_day(s, day, now)
        result.days_folded += 1
    check("horizon")
    with store.session() as s:
        _move_horizon(s, plan.horizon, now)
        kept = kept_ids(s, plan.cutoff)
    result.kept = len(kept)
    while True:
        check("deployments")
        with store.session() as s:
            ids = list(s.scalars(select(D.id).where(_pruned_runs(plan.cutoff, kept)).limit(batch)))
            if not ids:
                break
            result.deleted["events"] += rowcount(s.execute(delete(Event).where(Event.deployment_id.in_(ids))))
            result.deleted["steps"] += rowcount(s.execute(delete(StepRecord).where(StepRecord.deployment_id.in_(ids))))
            result.deleted["deployments"] += rowcount(s.execute(delete(D).where(D.id.in_(ids))))
    for name, model, cond in (("events", Event, _old_events(plan.cutoff)),
                              ("outbox", OutboxEntry, _old_outbox(plan.cutoff)),
                              ("git_triggers", GitTrigger, GitTrigger.created_at < plan.cutoff)):
        _delete_batches(store, name, result, check, batch, model, [model.id], cond)
    _delete_batches(store, "git_deliveries", result, check, batch, GitDelivery,
                    [GitDelivery.source, GitDelivery.delivery], _old_deliveries(plan.cutoff))
    return result


def _delete_batches(store: Store, name: str, result: PruneResult, check: Checkpoint, batch: int, model: Any,
                    key: list[Any], cond: Any) -> None:
    """Delete the rows of `model` matching `cond`, `batch` a transaction; `key`: its primary key's columns."""
    while True:
        check(name)
        with store.session() as s:
            which = key[0] if len(key) == 1 else tuple_(*key)
            n = rowcount(s.execute(delete(model).where(which.in_(select(*key).where(cond).limit(batch)))))
        result.deleted[name] += n
        if n < batch:
            break
