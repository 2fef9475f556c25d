"""Report periods: parsing `--period`, since/until, and the previous period of the same length."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shipyard.errors import UsageError
from shipyard.reports.period import Period, parse_period, parse_time

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(("spec", "length"), [("30d", timedelta(days=30)), ("7d", timedelta(days=7)),
                                              ("90d", timedelta(days=90)), ("12h", timedelta(hours=12)),
                                              ("2w", timedelta(weeks=2)), (" 30D ", timedelta(days=30))])
def test_period_spec_ends_now(spec: str, length: timedelta) -> None:
    p = parse_period(spec, now=NOW)
    assert p.until == NOW and p.since == NOW - length and p.length == length
    assert p.label == spec.strip().lower()


@pytest.mark.parametrize("spec", ["", "30", "d", "0d", "-1d", "1.5d", "30m", "30 d", "1y", "99999d", "7d7d"])
def test_bad_period_specs_are_usage_errors(spec: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_period(spec, now=NOW)
    assert "\n" not in str(err.value)


def test_previous_period_has_the_same_length_and_ends_at_the_start() -> None:
    p = parse_period("7d", now=NOW)
    prev = p.previous()
    assert prev.until == p.since and prev.length == p.length and prev.label == "previous 7d"
    assert prev.previous().until == prev.since


def test_period_is_normalised_to_utc_and_refuses_naive_or_empty() -> None:
    seoul = timezone(timedelta(hours=9))
    p = Period(datetime(2026, 11, 1, 9, tzinfo=seoul), datetime(2026, 11, 2, 9, tzinfo=seoul))
    assert p.since == datetime(2026, 11, 1, tzinfo=UTC) and p.since.tzinfo is UTC
    assert p.days == 1.0
    with pytest.raises(UsageError, match="no time zone"):
        Period(datetime(2026, 11, 1), NOW)
    with pytest.raises(UsageError, match="end after"):
        Period(NOW, NOW)


def test_parse_time_reads_dates_zones_and_refuses_junk() -> None:
    assert parse_time("2026-11-01", "--since") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_time("2026-11-01T09:00:00+09:00", "--since") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_time("2026-11-01T00:00:00Z", "--since") == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(UsageError, match="--until must be an ISO 8601"):
        parse_time("yesterday", "--until")


def test_to_dict_is_json_ready() -> None:
    d = parse_period("12h", now=NOW).to_dict()
    assert d == {"since": "2026-12-02T03:00:00+00:00", "until": "2026-12-02T15:00:00+00:00", "days": 0.5,
                 "label": "12h"}
