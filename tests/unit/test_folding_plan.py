"""`plan_folds`: which closed days a fold takes, which changed ones it folds again, and where it stops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shipyard.reports.aggregates import Horizon, split
from shipyard.store.folding import SETTLE, plan_folds

D0 = datetime(2026, 11, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def day(n: float) -> datetime:
    return D0 + n * DAY


def test_a_first_fold_starts_at_the_oldest_run_and_stops_before_today() -> None:
    plan = plan_folds(day(3.5), folded_before=None, pruned_before=None, oldest_raw=day(0.4), first_unfinished=None,
                      dirty=[])
    assert plan.extend == (day(0), day(1), day(2)) and plan.refold == ()


def test_it_goes_on_from_the_folded_horizon_within_a_limit() -> None:
    plan = plan_folds(day(10.1), folded_before=day(4), pruned_before=None, oldest_raw=day(0), first_unfinished=None,
                      dirty=[], limit=3)
    assert plan.extend == (day(4), day(5), day(6))


def test_an_unfinished_run_holds_its_day_until_it_settles() -> None:
    held = plan_folds(day(3) + SETTLE - timedelta(minutes=1), folded_before=day(1), pruned_before=None,
                      oldest_raw=day(0), first_unfinished=day(2.9), dirty=[])
    assert held.extend == (day(1),)
    settled = plan_folds(day(3) + SETTLE, folded_before=day(1), pruned_before=None, oldest_raw=day(0),
                         first_unfinished=day(2.9), dirty=[])
    assert settled.extend == (day(1), day(2))


def test_changed_days_are_folded_again_but_not_pruned_ones_nor_unfolded_ones() -> None:
    plan = plan_folds(day(9.5), folded_before=day(6), pruned_before=day(2), oldest_raw=day(2),
                      first_unfinished=None, dirty=[day(1), day(3), day(5), day(7)])
    assert plan.refold == (day(3), day(5)) and plan.extend == (day(6), day(7), day(8))


def test_nothing_to_fold_in_an_empty_history() -> None:
    plan = plan_folds(day(9), folded_before=None, pruned_before=None, oldest_raw=None, first_unfinished=None,
                      dirty=[day(1)])
    assert plan.extend == () and plan.refold == ()


def test_a_window_reads_only_its_whole_days_from_aggregates() -> None:
    h = Horizon(cut=day(8))
    part = split(day(1.5), day(9.25), h)        # a rolling window: partial first day, ends after the cut
    assert (part.lo, part.hi) == (day(2), day(8))
    assert part.raw is not None and part.raw.gap == (day(2), day(8))
    inside = split(day(2), day(8), h)
    assert inside.raw is None and (inside.lo, inside.hi) == (day(2), day(8))
    early = split(day(1.5), day(4.5), h)        # ends before the cut: its last, partial day is read raw
    assert (early.lo, early.hi) == (day(2), day(4)) and early.raw is not None
    pruned = split(day(1.5), day(4.5), Horizon(cut=day(8), pruned=day(6)))   # no raw rows there: whole day
    assert (pruned.lo, pruned.hi) == (day(2), day(5))
    short = split(day(1.2), day(1.8), h)        # no whole day inside: all raw
    assert short.lo is None and short.raw is not None and short.raw.gap is None
    after = split(day(8.5), day(9), h)
    assert after.lo is None and after.raw is not None
