"""`evaluate` against the tables of the CloudWatch User Guide, "Configuring how CloudWatch alarms treat
missing data" (0 = not breaching, X = breaching, - = missing; five datapoints fetched for N = 3)."""

from __future__ import annotations

import pytest

from shipyard.config.alerting import Alarm
from shipyard.monitoring.alarms import (
    AlarmState,
    aggregate,
    alarm_window,
    evaluate,
    evaluation_range,
    explain,
    percentile,
    statistic,
)
from shipyard.monitoring.base import Sample, Window

MODES = ("missing", "ignore", "breaching", "notBreaching")
PREV = AlarmState.OK  # "Retain current state" is checked against every previous state below


def _alarm(m: int, n: int, mode: str = "missing") -> Alarm:
    return Alarm(metric="m", comparison=">", threshold=1.0, evaluation_periods=n, datapoints_to_alarm=m,
                 treat_missing_data=mode)  # type: ignore[arg-type]


def _values(row: str) -> list[float | None]:
    return [{"0": 0.0, "X": 5.0, "-": None}[c] for c in row.split()]


# (datapoints, MISSING, IGNORE, BREACHING, NOT BREACHING); "keep" = retain current state
THREE_OF_THREE = [
    ("0 - X - X", "OK", "OK", "OK", "OK"),
    ("0 - - - -", "OK", "OK", "OK", "OK"),
    ("- - - - -", "INSUFFICIENT_DATA", "keep", "ALARM", "OK"),
    ("0 X X - X", "ALARM", "ALARM", "ALARM", "ALARM"),
    ("- - - - X", "INSUFFICIENT_DATA", "keep", "ALARM", "OK"),
    # premature-alarm rule: the breaching datapoint is 3 periods old, nothing but missing since
    ("- - X - -", "ALARM", "keep", "ALARM", "OK"),
]
TWO_OF_THREE = [
    ("0 - X - X", "ALARM", "ALARM", "ALARM", "ALARM"),
    ("0 0 X 0 X", "ALARM", "ALARM", "ALARM", "ALARM"),
    ("0 - X - -", "OK", "OK", "ALARM", "OK"),
    ("- - - - 0", "OK", "OK", "ALARM", "OK"),
    ("- - - - X", "INSUFFICIENT_DATA", "keep", "ALARM", "OK"),
    ("- - X - -", "ALARM", "keep", "ALARM", "OK"),
]


@pytest.mark.parametrize(("m", "row"), [(3, r) for r in THREE_OF_THREE] + [(2, r) for r in TWO_OF_THREE])
def test_documentation_tables(m: int, row: tuple[str, ...]) -> None:
    points, *expected = row
    for mode, want in zip(MODES, expected, strict=True):
        for prev in AlarmState:
            got = evaluate(_alarm(m, 3, mode), _values(points), prev)
            assert got == (prev if want == "keep" else AlarmState(want)), (points, mode, prev)


def test_range_is_n_plus_two_and_full_data_ignores_the_mode() -> None:
    assert evaluation_range(_alarm(3, 3)) == 5
    for mode in MODES:
        assert evaluate(_alarm(1, 1, mode), [None, None, 0.0], AlarmState.ALARM) == AlarmState.OK


def test_explain_carries_the_values_that_decided() -> None:
    e = explain(_alarm(2, 3), _values("0 0 X 0 X"), "OK")
    assert e.changed and e.state == "ALARM" and e.breaching == 2
    assert e.evaluated == [5.0, 0.0, 5.0]
    assert e.to_dict()["previous"] == "OK" and "2 of the last 3" in e.reason


def test_comparisons_and_cloudwatch_names() -> None:
    a = Alarm(metric="m", comparison="LessThanThreshold", threshold=1, evaluation_periods=1)  # type: ignore[arg-type]
    assert evaluate(a, [0.5], "OK") == "ALARM"
    assert evaluate(a, [1.0], "ALARM") == "OK"


def test_statistics() -> None:
    vals = [float(v) for v in range(1, 101)]
    assert statistic("Average", vals) == 50.5
    assert statistic("Sum", vals) == 5050
    assert statistic("Minimum", vals) == 1 and statistic("Maximum", vals) == 100
    assert statistic("SampleCount", vals) == 100
    assert statistic("p95", vals) == 95 and statistic("p99.5", vals) == 100
    assert statistic("p50", []) is None
    assert percentile([3.0], 10) == 3.0


def test_aggregate_per_period_with_gaps() -> None:
    w = Window(0, 30, 10)
    samples = [Sample(1, 1.0), Sample(2, 3.0), Sample(25, 9.0), Sample(31, 100.0)]
    assert aggregate(samples, w, "Average") == [2.0, None, 9.0]
    assert aggregate(samples, w, "SampleCount") == [2.0, None, 1.0]


def test_alarm_window_spans_the_range() -> None:
    w = alarm_window(Alarm(metric="m", comparison=">", threshold=1, period=10, evaluation_periods=3), 100)
    assert (w.start, w.end, w.step) == (50, 100, 10) and len(w.periods()) == 5
