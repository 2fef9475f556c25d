"""The one interface every metric backend implements, and the value type it returns.

A provider answers `query(metric, window) -> [Sample]`; it hides whether the numbers came from the built-in
router's counters, PromQL, CloudWatch or a JSON endpoint. Rates and ratios are computed by the provider
(it knows whether its counters are cumulative); alarms only aggregate samples per period.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Window:
    """A half-open time range [start, end) in epoch seconds, cut into `step`-second periods."""

    start: float
    end: float
    step: float = 60.0

    def periods(self) -> list[tuple[float, float]]:
        """The period boundaries, oldest first; the last period may be shorter than `step`."""
        out: list[tuple[float, float]] = []
        t = self.start
        while t < self.end - 1e-9:
            out.append((t, min(t + self.step, self.end)))
            t += self.step
        return out


@dataclass(frozen=True)
class Sample:
    """One observation of a metric at time `at` (epoch seconds); `labels` say what it is about
    (revision, instance), so canary and baseline can be told apart."""

    at: float
    value: float
    labels: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class MetricProvider(Protocol):
    """Where metric samples come from."""

    async def query(self, metric: str, window: Window, *, labels: dict[str, str] | None = None) -> list[Sample]:
        """Samples of `metric` inside `window`, restricted to series matching `labels` when given.

        An empty list means "no data", which alarms treat according to `treat_missing_data`; a provider
        that cannot be reached raises `MonitoringError` instead, so no data is never confused with an outage.
        """
        ...
