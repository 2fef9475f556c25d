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

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, delete, func, or_, select, tuple_
from sqlalchemy.orm import Session

from shipyard.errors import UsageError
from shipyard.reports.aggregates import pruned
from shipyard.reports.stats import UNFINISHED_STATES
from shipyard.store import Store
from shipyard.store.deployments import succeeded_history
from shipyard.store.fold_marks import HORIZON_ID, floor_day
from shipyard.store.folding import ensure_horizon, fold_locked
from shipyard.store.models import Deployment as D
from shipyard.store.models import (
    Event,
    FoldDirty,
    GitDelivery,
    GitTrigger,
    HistoryHorizon,
    OutboxEntry,
    StepRecord,
)
from shipyard.store.outbox import DELIVERED
from shipyard.store.sql import rowcount, utcnow

DAY: Final = timedelta(days=1)
BATCH: Final = 2000
MIN_RETENTION: Final = DAY.total_seconds()
KEEP_GOOD: Final = 2            # the current and the previous good release of each service/env

Checkpoint = Callable[[str], None]      # called before every transaction; may raise to stop the prune


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


def kept_ids(session: Session, cutoff: datetime) -> set[str]:
    """Runs older than the cutoff that are kept: unfinished ones, and each service/env's current and
    previous good release (`deployments.succeeded_history`, what rollback reads)."""
    kept = set(session.scalars(select(D.id).where(D.created_at < cutoff, D.state.in_(UNFINISHED_STATES))))
    for service, env in session.execute(select(D.service, D.env).distinct()):
        kept.update(r.id for r in succeeded_history(session, service, env, limit=KEEP_GOOD) if r.created_at < cutoff)
    return kept


def _move_horizon(session: Session, to: datetime, now: datetime) -> None:
    row = session.get(HistoryHorizon, HORIZON_ID, with_for_update=True)
    if row is None:
        session.add(HistoryHorizon(id=HORIZON_ID, pruned_before=to, updated_at=now))
    elif row.pruned_before is None or row.pruned_before < to:
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
        current = pruned(s)
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
    conds = [D.created_at < cutoff, D.state.not_in(UNFINISHED_STATES)]
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
    ensure_horizon(store, now)
    with store.session(readonly=True) as s:
        folded = s.scalar(select(HistoryHorizon.folded_before).where(HistoryHorizon.id == HORIZON_ID))
        dirty = set(s.scalars(select(FoldDirty.day).distinct()))
    for day in plan.fold:
        if folded is not None and day < folded and day not in dirty:
            continue                    # folded ahead by `store.folding`, unchanged since: complete already
        check(f"fold {day:%Y-%m-%d}")
        with store.session() as s:
            result.runs_folded += fold_locked(s, day, now, extend=False)
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
