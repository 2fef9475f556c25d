"""Folding closed days ahead (`shipyard.store.folding`) on SQLite and PostgreSQL: reports answer from the
daily aggregates with the figures the raw rows give, a day changed after its fold is read raw until it is
folded again, and a change racing a fold is never lost.

The history is tests/reports_history.py's (T0-1d .. T0+10d, one queued run at T0+10d)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from test_retention import PERIODS, same

from reports_history import T0, UNTIL, at, write_history
from shipyard.reports import Period, compute_dora, compute_stats
from shipyard.reports.aggregates import horizon
from shipyard.reports.pipeline import pipeline_stats
from shipyard.store import Store
from shipyard.store import deployments as dq
from shipyard.store.folding import fold_closed, fold_locked
from shipyard.store.models import DailyAggregate, FoldDirty, HistoryHorizon
from shipyard.store.retention import prune
from shipyard.testing.wait import wait_until

NOW = UNTIL + timedelta(hours=12)          # T0+10d is today: the days T0-1d .. T0+9d are closed
PARTIAL = [Period(at(0, 13), at(7, 5)), Period(at(-1, 11), at(4, 23)), Period(at(2, 10), UNTIL)]


def _figures(session: Any, periods: list[Period]) -> list[dict[str, Any]]:
    return [{"stats": compute_stats(session, p, service), "dora": compute_dora(session, p, service),
             "pipeline": pipeline_stats(session, p, service)}
            for p in periods for service in (None, "api", "web")]


def figures(store: Store, periods: list[Period] = [*PERIODS, *PARTIAL]) -> list[dict[str, Any]]:  # noqa: B006
    with store.session(readonly=True) as s:
        return _figures(s, periods)


def raw_figures(store: Store, periods: list[Period] = [*PERIODS, *PARTIAL]) -> list[dict[str, Any]]:  # noqa: B006
    """What the raw rows alone say: the figures with the horizon row gone, in a transaction rolled back."""
    with store.session() as s:
        s.execute(delete(HistoryHorizon))
        out = _figures(s, periods)
        s.rollback()
    return out


def marks(store: Store) -> list[Any]:
    with store.session(readonly=True) as s:
        return sorted(set(s.scalars(select(FoldDirty.day))))


def roll_back_later(store: Store, run_id: str, when: Any) -> None:
    """What `shipyard rollback` does to the run it undoes (engine/deployer.py's _mark_rolled_back)."""
    for state in ("rolling_back", "rolled_back"):
        with store.session() as s:
            dq.update_deployment(s, run_id, state=state, now=when)


@pytest.fixture
def history(store: Store) -> Store:
    write_history(store)
    return store


def test_folding_ahead_keeps_every_figure(history: Store) -> None:
    before = figures(history)
    result = fold_closed(history, now=NOW)
    assert (result.folded, result.refolded, result.folded_before) == (11, 0, UNTIL)
    with history.session(readonly=True) as s:
        assert horizon(s) is not None and horizon(s).cut == UNTIL        # type: ignore[union-attr]
        assert int(s.scalar(select(func.count()).select_from(DailyAggregate)) or 0) > 0
    same(before, figures(history))                # partial first and last days are read raw: counts exact
    again = fold_closed(history, now=NOW)         # nothing left to do
    assert (again.folded, again.refolded) == (0, 0)


def test_the_day_of_a_queued_run_waits_until_it_settles(history: Store) -> None:
    assert fold_closed(history, now=UNTIL + timedelta(days=1, hours=1)).folded_before == UNTIL   # q1 queued
    assert fold_closed(history, now=UNTIL + timedelta(days=1, hours=7)).folded_before == UNTIL + timedelta(days=1)


def test_a_run_changed_after_its_fold_is_read_raw_then_folded_again(history: Store) -> None:
    fold_closed(history, now=NOW)
    roll_back_later(history, "d6", NOW + timedelta(minutes=5))     # d6: T0+3d, succeeded
    assert marks(history) == [at(3)]
    with history.session(readonly=True) as s:
        assert horizon(s).cut == at(3)            # type: ignore[union-attr]
    truth = raw_figures(history)
    same(truth, figures(history))
    result = fold_closed(history, now=NOW + timedelta(minutes=10))
    assert (result.refolded, result.folded, marks(history)) == (1, 0, [])
    same(truth, figures(history))


def _good_web_run(store: Store, when: Any) -> None:
    with store.session() as s:
        dq.create_deployment(s, deployment_id="w4", service="web", env="prod", revision="f" * 40,
                             strategy="rolling", actor="test", state="in_progress", now=when)
    with store.session() as s:
        dq.update_deployment(s, "w4", state="succeeded", now=when + timedelta(seconds=60))


def test_a_restore_after_the_fold_marks_the_failures_day(history: Store) -> None:
    fold_closed(history, now=NOW)                 # w2 (web/prod, T0+5d) failed and is unrestored at fold time
    _good_web_run(history, NOW)
    assert marks(history) == [at(5)]
    truth = raw_figures(history)
    overall = truth[0]["dora"]["overall"]["time_to_restore"]
    assert overall["unrestored"] == 0, overall    # the raw rows say w2 is restored now
    same(truth, figures(history))
    fold_closed(history, now=NOW + timedelta(minutes=5))
    assert marks(history) == []
    same(truth, figures(history))


def _in_thread(fn: Callable[[], None]) -> tuple[threading.Thread, threading.Event, list[BaseException]]:
    done, errors = threading.Event(), []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:          # reported by the test
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done, errors


def test_a_restore_racing_the_fold_of_its_day_is_not_lost(history: Store) -> None:
    fold_closed(history, now=at(5, 12))           # folded up to T0+5d: w2's day (T0+5d) not yet
    with history.session() as s:                  # the fold of T0+5d, holding the horizon row, not committed yet
        fold_locked(s, at(5), NOW, extend=True)
        thread, done, errors = _in_thread(lambda: _good_web_run(history, NOW))
        assert not done.wait(1.0)                 # the run's end waits for the fold to commit
    wait_until(done.is_set, 60, "the run's end after the fold committed")
    thread.join(10)
    assert not errors, errors
    assert at(5) in marks(history)               # it saw the new aggregate of T0+5d and marked it
    same(raw_figures(history), figures(history))


def test_prune_skips_days_folded_ahead_and_refolds_changed_ones(history: Store) -> None:
    fold_closed(history, now=NOW)
    roll_back_later(history, "d6", NOW)
    truth = raw_figures(history, PERIODS)         # whole days: a pruned day's raw part is gone (dora.md)
    result = prune(history, 90 * 86400.0, now=T0 + timedelta(days=94))     # cutoff T0+4d
    assert result.days_folded == 1                # only the changed T0+3d; the other four were folded ahead
    same(truth, figures(history, PERIODS))
    fold_closed(history, now=T0 + timedelta(days=94))
    assert marks(history) == []


def test_days_folded_before_pipeline_aggregates_are_read_raw_until_refolded(history: Store) -> None:
    """Revision 0010 added each day's pipeline figures: days folded before it are marked changed, so the
    pipeline report stays what the raw rows say, and the next fold fills them in."""
    from alembic import command

    from shipyard.store.migrate import alembic_config

    truth = raw_figures(history)
    fold_closed(history, now=NOW)
    with history.session(readonly=True) as s:
        folded_days = sorted(set(s.scalars(select(DailyAggregate.day))))
    with history.engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0009")
    url = history.engine.url.render_as_string(hide_password=False)
    with Store.open(url) as again:                           # opening upgrades to head: 0010 marks the days
        assert marks(again) == folded_days and folded_days
        same(truth, figures(again))
        assert fold_closed(again, now=NOW).refolded == len(folded_days)
        assert marks(again) == []
        same(truth, figures(again))
        with again.session(readonly=True) as s:
            assert all(a.pipeline is not None for a in s.scalars(select(DailyAggregate)))
