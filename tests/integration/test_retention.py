"""Retention on SQLite and PostgreSQL: prune the hand-made history of tests/reports_history.py and check
what went, what stayed, and that stats and DORA over periods across the cutoff answer as before.

The prune runs at T0 + 94 days with 90 days of retention: the cutoff is T0 + 4d (midnight), so the days
T0-1d .. T0+3d are folded. Gone: o1, d1, d2, d3, d4 (and their 8 steps); kept: d5 and d6 (the current and
previous good release of api/prod), w1 (web/prod's current one) and `old`, an in-progress run of T0-1d.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from reports_history import T0, UNTIL, at, write_history
from shipyard.reports import Period, compute_dora, compute_stats
from shipyard.reports.histogram import RESOLUTION
from shipyard.reports.pipeline import pipeline_stats
from shipyard.store import Store
from shipyard.store import deployments as dq
from shipyard.store import events as eq
from shipyard.store import git_triggers as gq
from shipyard.store import outbox as oq
from shipyard.store.models import DailyAggregate, Deployment, Event, GitDelivery, GitTrigger, OutboxEntry, StepRecord
from shipyard.store.retention import prune

NOW = T0 + timedelta(days=94)
RETENTION = 90 * 86400.0
CUTOFF = T0 + timedelta(days=4)
PERIODS = [Period(T0 - timedelta(days=1), UNTIL), Period(T0, UNTIL), Period(T0 - timedelta(days=2), CUTOFF),
           Period(T0 + timedelta(days=2), T0 + timedelta(days=6)), Period(T0 - timedelta(days=30), UNTIL)]
APPROX = ("p50_duration_seconds", "p90_duration_seconds", "median_seconds", "p50_seconds", "p95_seconds")


class Interrupted(Exception):
    pass


def write_extras(store: Store) -> None:
    """An old unfinished run, events with and without a run, outbox rows in every state."""
    with store.session() as s:
        dq.create_deployment(s, deployment_id="old", service="api", env="dev", revision="a" * 40,
                             previous_revision=None, strategy="rolling", actor="test", state="in_progress",
                             now=at(-1, 12))
        for dep, when in (("d1", at(0, 10)), ("d1", at(0, 11)), ("d6", at(3, 10)), ("old", at(-1, 12))):
            eq.add_event(s, "deploy.started", service="api", env="prod", deployment_id=dep, at=when)
        gone = eq.add_event(s, "note", service="api", env="prod", at=at(0, 5))
        eq.add_event(s, "note", service="api", env="prod", at=at(5, 5))
        rows = [("delivered-old", at(1), True), ("pending-old", at(0), False), ("delivered-new", at(6), True),
                ("failed-old", at(0), False)]
        for key, when, delivered in rows:
            row = oq.enqueue(s, event_id=gone.id, channel="c", idempotency_key=key, payload={}, now=when)
            if delivered:
                oq.mark_delivered(s, row.id, now=when)
            elif key.startswith("failed"):
                oq.mark_failed(s, row.id, "boom")


@pytest.fixture
def history(store: Store) -> Store:
    write_history(store)
    write_extras(store)
    return store


def figures(store: Store) -> list[dict[str, Any]]:
    out = []
    with store.session(readonly=True) as s:
        for period in PERIODS:
            for service in (None, "api", "web"):
                out.append({"stats": compute_stats(s, period, service), "dora": compute_dora(s, period, service),
                            "pipeline": pipeline_stats(s, period, service)})
    return out


def same(before: Any, after: Any, path: str = "") -> None:
    """Equal, but for percentiles and medians, which may move by the histograms' resolution."""
    if isinstance(before, dict):
        assert set(before) == set(after), path
        for key in before:
            if key in APPROX and before[key] is not None:
                assert after[key] == pytest.approx(before[key], rel=RESOLUTION), f"{path}.{key}"
            elif not (key == "band" and "time_to_restore" in path):   # a band follows its median
                same(before[key], after[key], f"{path}.{key}")
    elif isinstance(before, list):
        assert len(before) == len(after), path
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            same(b, a, f"{path}[{i}]")
    else:
        assert before == after, path


def ids(store: Store) -> set[str]:
    with store.session(readonly=True) as s:
        return set(s.scalars(select(Deployment.id)))


def counts(store: Store) -> dict[str, int]:
    with store.session(readonly=True) as s:
        return {m.__tablename__: int(s.scalar(select(func.count()).select_from(m)) or 0)
                for m in (Deployment, StepRecord, Event, OutboxEntry, DailyAggregate)}


def aggregates(store: Store) -> list[tuple[Any, ...]]:
    with store.session(readonly=True) as s:
        return sorted((a.day, a.service, a.env, a.kind, a.total, a.succeeded, a.failed, a.rolled_back, a.cancelled,
                       a.reached, a.change_failed, a.restored, a.unrestored, round(a.dur_sum, 6), a.dur_n,
                       sorted(a.dur_hist.items()), sorted(a.restore_hist.items()), sorted(a.steps.items()))
                      for a in s.scalars(select(DailyAggregate)))


def test_prune_deletes_what_is_past_the_cutoff_and_keeps_the_figures(history: Store) -> None:
    before = figures(history)
    dry = prune(history, RETENTION, now=NOW, dry_run=True)
    assert ids(history) >= {"o1", "d1"} and counts(history)["daily_aggregates"] == 0    # a dry run writes nothing
    result = prune(history, RETENTION, now=NOW, batch=2)
    assert result.cutoff == CUTOFF and result.days_folded == 5
    assert result.deleted == dry.deleted == {"deployments": 5, "steps": 8, "events": 3, "outbox": 1,
                                                "git_triggers": 0, "git_deliveries": 0}
    assert ids(history) == {"old", "d5", "d6", "d7", "w1", "w2", "w3", "q1"}
    with history.session(readonly=True) as s:
        events = [(e.deployment_id, e.at) for e in s.scalars(select(Event).order_by(Event.id))]
        assert events == [("d6", at(3, 10)), ("old", at(-1, 12)), (None, at(5, 5))]
        assert sorted(s.scalars(select(OutboxEntry.idempotency_key))) == ["delivered-new", "failed-old",
                                                                          "pending-old"]
        assert s.scalars(select(StepRecord.deployment_id).distinct()).all() == ["w2"]
    assert aggregates(history)
    same(before, figures(history))


def test_prune_twice_is_prune_once(history: Store) -> None:
    prune(history, RETENTION, now=NOW)
    once, rows = figures(history), aggregates(history)
    again = prune(history, RETENTION, now=NOW)
    assert again.deleted == {"deployments": 0, "steps": 0, "events": 0, "outbox": 0, "git_triggers": 0,
                             "git_deliveries": 0} and again.days_folded == 0
    assert aggregates(history) == rows and counts(history)["deployments"] == 8
    assert figures(history) == once


@pytest.mark.parametrize("stop_at", ["fold 2026-11-01", "horizon", "deployments#2", "events", "outbox"])
def test_an_interrupted_prune_leaves_a_consistent_store_and_the_next_finishes(history: Store, stop_at: str) -> None:
    before = figures(history)
    seen: dict[str, int] = {}

    def checkpoint(what: str) -> None:
        seen[what] = seen.get(what, 0) + 1
        if what == stop_at or f"{what}#{seen[what]}" == stop_at:
            raise Interrupted(what)

    with pytest.raises(Interrupted):
        prune(history, RETENTION, now=NOW, batch=2, checkpoint=checkpoint)
    same(before, figures(history))
    prune(history, RETENTION, now=NOW, batch=2)
    assert ids(history) == {"old", "d5", "d6", "d7", "w1", "w2", "w3", "q1"}
    assert counts(history)["outbox"] == 3
    same(before, figures(history))


def test_a_later_prune_moves_the_horizon_on(history: Store) -> None:
    before = figures(history)
    prune(history, RETENTION, now=NOW - timedelta(days=2))          # cutoff T0+2d
    prune(history, RETENTION, now=NOW + timedelta(days=4))          # cutoff T0+8d: w2 and d7 go too
    assert ids(history) == {"old", "d5", "d6", "w1", "w3", "q1"}
    same(before, figures(history))


def test_prune_deletes_gitops_records_past_the_cutoff_in_batches(history: Store) -> None:
    """GitOps' triggers and webhook delivery ids older than the cutoff go, `batch` at a time (interrupted
    midway, the next prune finishes); newer ones stay, so a recent replay is still refused."""
    with history.session() as s:
        for n, day in enumerate((-3, -2, 0, 1, 3, 5, 6)):
            assert gq.claim(s, service="api", env="dev", sha=f"{n:040x}", source="github", repo="api", branch="dev",
                            delivery=f"d{n}")
            assert gq.first_delivery(s, "github", f"d{n}")
            s.execute(update(GitTrigger).where(GitTrigger.sha == f"{n:040x}").values(created_at=at(day)))
            s.execute(update(GitDelivery).where(GitDelivery.delivery == f"d{n}").values(received_at=at(day)))
    assert prune(history, RETENTION, now=NOW, dry_run=True).deleted["git_deliveries"] == 5

    seen: list[str] = []

    def stop_at_second_batch(what: str) -> None:
        seen.append(what)
        if seen.count("git_deliveries") == 2:
            raise Interrupted(what)

    with pytest.raises(Interrupted):
        prune(history, RETENTION, now=NOW, batch=2, checkpoint=stop_at_second_batch)
    with history.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(GitTrigger)) == 2          # every trigger batch ran
        assert s.scalar(select(func.count()).select_from(GitDelivery)) == 5         # one delivery batch of 2
    result = prune(history, RETENTION, now=NOW, batch=2)
    assert (result.deleted["git_triggers"], result.deleted["git_deliveries"]) == (0, 3)
    with history.session() as s:
        assert sorted(s.scalars(select(GitTrigger.delivery))) == ["d5", "d6"]
        assert sorted(s.scalars(select(GitDelivery.delivery))) == ["d5", "d6"]
        assert not gq.first_delivery(s, "github", "d6")           # a kept one is still a replay
        assert gq.first_delivery(s, "github", "d0")               # a pruned one is past any redelivery
