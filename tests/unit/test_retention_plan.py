"""The retention planner (pure) and the histogram math the aggregates keep percentiles with."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from shipyard.errors import UsageError
from shipyard.reports.histogram import (
    BASE,
    RESOLUTION,
    ZERO,
    bucket,
    bucket_value,
    histogram,
    merge,
    merged_percentile,
)
from shipyard.reports.sqlexpr import nearest_rank
from shipyard.store.retention import floor_day, plan_prune

DAY = 86400.0
NOW = datetime(2026, 12, 2, 18, 30, tzinfo=UTC)
MIDNIGHT = datetime(2026, 9, 3, tzinfo=UTC)          # NOW - 90 days, floored


def test_the_cutoff_is_the_midnight_before_now_minus_the_retention() -> None:
    plan = plan_prune(NOW, 90 * DAY, None, MIDNIGHT - timedelta(days=2, hours=-5))
    assert plan.cutoff == plan.horizon == MIDNIGHT
    assert plan.fold == (MIDNIGHT - timedelta(days=2), MIDNIGHT - timedelta(days=1))


def test_days_before_the_horizon_are_not_folded_again() -> None:
    current = MIDNIGHT - timedelta(days=1)
    plan = plan_prune(NOW, 90 * DAY, current, MIDNIGHT - timedelta(days=30))
    assert plan.fold == (current,) and plan.horizon == MIDNIGHT


def test_nothing_old_enough_folds_nothing_and_a_shorter_past_retention_keeps_its_horizon() -> None:
    assert plan_prune(NOW, 90 * DAY, None, NOW - timedelta(days=3)).fold == ()
    assert plan_prune(NOW, 90 * DAY, None, None).fold == ()
    later = MIDNIGHT + timedelta(days=60)                 # an earlier `prune --older-than 30d`
    plan = plan_prune(NOW, 90 * DAY, later, later)
    assert plan.fold == () and plan.horizon == later and plan.cutoff == MIDNIGHT


def test_less_than_a_day_is_refused() -> None:
    with pytest.raises(UsageError, match="at least 1d"):
        plan_prune(NOW, 3600, None, None)


def test_floor_day_is_utc_midnight() -> None:
    assert floor_day(datetime(2026, 3, 1, 23, 59, tzinfo=UTC)) == datetime(2026, 3, 1, tzinfo=UTC)


def test_a_bucket_holds_its_value_within_the_resolution() -> None:
    for v in (0.001, 0.5, 1.0, BASE, 30.0, 59.999, 60.0, 3600.0, 86400.0 * 9):
        assert abs(bucket_value(bucket(v)) - v) <= RESOLUTION * v * (1 + 1e-9), v    # exact at a lower edge
    assert bucket(0.0) == bucket(0.0004) == ZERO and bucket_value(ZERO) == 0.0
    assert pytest.approx(0.0219, abs=0.0001) == RESOLUTION


def test_percentiles_from_histograms_stay_within_the_resolution_of_the_exact_ones() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(5, 1.2) for _ in range(2001)]
    old, new = values[:1500], values[1500:]          # the pruned part as buckets, the rest exact
    hist = histogram(old)
    for p in (1, 50, 90, 99, 100):
        exact = nearest_rank(values, p)
        assert exact is not None
        assert merged_percentile(new, hist, p) == pytest.approx(exact, rel=RESOLUTION), p


def test_merging_adds_counts_and_an_empty_percentile_is_none() -> None:
    assert merge({"1": 2}, {"1": 1, "z": 4}) == {"1": 3, "z": 4}
    assert merged_percentile([], {}, 50) is None
    assert merged_percentile([5.0, 1.0, 3.0], {}, 50) == 3.0       # exact values alone: nearest rank
    assert merged_percentile([], {"z": 3}, 90) == 0.0
