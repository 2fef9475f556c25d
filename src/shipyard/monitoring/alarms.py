"""Alarm evaluation with Amazon CloudWatch's semantics, as a pure function.

The teams moving here know CloudWatch alarms; reproducing its rules exactly (rather than "something like
M of N") means an alarm copied from their AWS console behaves the same during a shipyard bake. The rules
follow the CloudWatch User Guide, "Configuring how CloudWatch alarms treat missing data"
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarms-and-missing-data.html):

* Evaluation range: CloudWatch fetches more datapoints than N (`evaluation_periods`); its tables use five
  for N = 3. Here the range is `evaluation_range(alarm)` = N + 2 periods and the caller passes the values of
  that range, oldest first (None = a period without data).
* If at least N real datapoints exist in the range, the N most recent real ones are evaluated and
  `treat_missing_data` is not used at all.
* Otherwise every real datapoint in the range is used and the remaining slots up to N are filled according
  to `treat_missing_data` ("uses missing data points only as few times as possible"): `breaching` fills
  breaching, `notBreaching` fills non-breaching; with `missing` and `ignore` a fill decides nothing, so the
  state is ALARM if M real datapoints breach, OK if a real datapoint does not breach (M cannot be reached),
  and otherwise INSUFFICIENT_DATA (`missing`) or the previous state (`ignore`). A range without any data is
  INSUFFICIENT_DATA / previous / ALARM / OK respectively.
* Premature-alarm rule ("Avoiding premature transitions to alarm state"): with `missing`, the alarm goes to
  ALARM when the oldest breaching datapoint among the last N periods is at least M periods old and every
  more recent period is breaching or missing, even if fewer than M datapoints exist. A real non-breaching
  datapoint anywhere in the range makes it OK instead (the table row `0 - X - -` of the 2-of-3 example is
  OK while `- - X - -` is ALARM), and with `ignore` the state is kept (that row's IGNORE column).

Every row of the two tables in that section is a test in tests/unit/test_monitoring_alarms.py.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shipyard.config.alerting import Alarm
from shipyard.monitoring.base import Sample, Window

EXTRA_RANGE_PERIODS = 2
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


class AlarmState(StrEnum):
    OK = "OK"
    ALARM = "ALARM"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


def evaluation_range(alarm: Alarm) -> int:
    """How many periods to fetch for one evaluation (N plus the extra CloudWatch uses for missing data)."""
    return alarm.evaluation_periods + EXTRA_RANGE_PERIODS


def breaches(alarm: Alarm, value: float) -> bool:
    """Whether one datapoint is on the wrong side of the threshold."""
    return _COMPARE[alarm.comparison](value, alarm.threshold)


def evaluate(alarm: Alarm, values: Sequence[float | None], previous: AlarmState | str) -> AlarmState:
    """The alarm's new state given the per-period values of its evaluation range (oldest first)."""
    return explain(alarm, values, previous).state


@dataclass(frozen=True)
class Evaluation:
    """A state together with why: the datapoints evaluated, so an event can show what caused a change."""

    state: AlarmState
    previous: AlarmState
    values: list[float | None]
    evaluated: list[float | None] = field(default_factory=list)
    breaching: int = 0
    reason: str = ""

    @property
    def changed(self) -> bool:
        return self.state != self.previous

    def to_dict(self) -> dict[str, Any]:
        return {"state": str(self.state), "previous": str(self.previous), "values": self.values,
                "evaluated": self.evaluated, "breaching": self.breaching, "reason": self.reason}


def explain(alarm: Alarm, values: Sequence[float | None], previous: AlarmState | str) -> Evaluation:
    """`evaluate` with the evaluated datapoints and a one-line reason (what the events and `show` print)."""
    prev = AlarmState(previous)
    m, n = alarm.m_of_n
    vals = [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in values]
    real = [v for v in vals if v is not None]
    cmp = f"{alarm.comparison} {alarm.threshold:g}"

    def done(state: AlarmState, evaluated: Sequence[float | None], count: int, why: str) -> Evaluation:
        return Evaluation(state, prev, vals, list(evaluated), count, why)

    if len(real) >= n:
        last = real[-n:]
        count = sum(breaches(alarm, v) for v in last)
        state = AlarmState.ALARM if count >= m else AlarmState.OK
        return done(state, last, count, f"{count} of the last {n} datapoints {cmp} (alarm at {m})")

    mode = alarm.treat_missing_data
    fills = n - len(real)
    real_breaching = sum(breaches(alarm, v) for v in real)
    if mode in ("breaching", "notBreaching"):
        count = real_breaching + (fills if mode == "breaching" else 0)
        evaluated: list[float | None] = [*real, *([None] * fills)]
        state = AlarmState.ALARM if count >= m else AlarmState.OK
        return done(state, evaluated, count,
                    f"{count} of {n} datapoints {cmp} ({fills} missing treated as {mode}; alarm at {m})")

    evaluated = [*real, *([None] * fills)]
    if real_breaching >= m:
        return done(AlarmState.ALARM, evaluated, real_breaching, f"{real_breaching} datapoints {cmp} (alarm at {m})")
    if real_breaching < len(real):
        return done(AlarmState.OK, evaluated, real_breaching,
                    f"{real_breaching} of {len(real)} available datapoints {cmp} (alarm at {m})")
    if mode == "missing" and _premature(vals[-n:], m):
        return done(AlarmState.ALARM, evaluated, real_breaching,
                    f"breaching {m}+ periods ago with only breaching or missing data since (premature-alarm rule)")
    if mode == "ignore":
        return done(prev, evaluated, real_breaching, "not enough data; missing data ignored, state kept")
    return done(AlarmState.INSUFFICIENT_DATA, evaluated, real_breaching,
                f"only {len(real)} datapoint(s) in the last {len(vals)} periods")


def _premature(last_n: Sequence[float | None], m: int) -> bool:
    """The documented exception, applied once every real datapoint in the range is known to breach: the
    oldest datapoint among the last N periods is at least M periods old (the newest period is age 1)."""
    ages = [age for age, v in enumerate(reversed(last_n), start=1) if v is not None]
    return bool(ages) and max(ages) >= m


# --- statistics -----------------------------------------------------------------------------------------
def statistic(name: str, values: Sequence[float]) -> float | None:
    """One CloudWatch statistic over the raw values of one period; None when there are none."""
    if not values:
        return None
    if name == "Average":
        return sum(values) / len(values)
    if name == "Sum":
        return float(sum(values))
    if name == "Minimum":
        return float(min(values))
    if name == "Maximum":
        return float(max(values))
    if name == "SampleCount":
        return float(len(values))
    if name.startswith("p"):
        return percentile(values, float(name[1:]))
    raise ValueError(f"unknown statistic {name!r}")


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: always a value that was actually observed, as CloudWatch reports."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def aggregate(samples: Iterable[Sample], window: Window, stat: str) -> list[float | None]:
    """Samples cut into the window's periods, one statistic per period (None where a period had none)."""
    periods = window.periods()
    buckets: list[list[float]] = [[] for _ in periods]
    for s in samples:
        if not window.start <= s.at < window.end:
            continue
        idx = min(int((s.at - window.start) // window.step), len(periods) - 1)
        buckets[idx].append(s.value)
    return [statistic(stat, b) for b in buckets]


def alarm_window(alarm: Alarm, now: float) -> Window:
    """The evaluation range ending at `now`, aligned to whole periods counted back from `now`."""
    span = alarm.period * evaluation_range(alarm)
    return Window(start=now - span, end=now, step=alarm.period)
