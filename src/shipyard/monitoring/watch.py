"""Evaluating a set of alarms over time: what the Analyze step and `shipyard watch` run every tick.

Each tick queries every alarm's metric over its evaluation range, aggregates the samples per period with
the alarm's statistic, and applies `alarms.explain` with the alarm's previous state. A change of state is
reported through `on_change` together with the values that caused it (the caller turns it into an event,
which notifications then route). A provider error leaves the alarm's state unchanged: an unreachable
metrics backend must not look like "no data" (which `treat_missing_data: breaching` would turn into a
rollback) nor like "all fine".

An entry may also be a CloudWatch alarm (`{cloudwatch: NAME}`): CloudWatch evaluates it, so its state is
read each `poll` and taken as it is (the reason is CloudWatch's own StateReason).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shipyard.aws import AwsSettings
from shipyard.config.alerting import Alarm, CloudWatchAlarmRef
from shipyard.errors import MonitoringError
from shipyard.monitoring.alarms import AlarmState, Evaluation, aggregate, alarm_window, explain
from shipyard.monitoring.base import MetricProvider
from shipyard.monitoring.providers.cloudwatch import CloudWatchAlarmStates

OnChange = Callable[[str, Alarm | CloudWatchAlarmRef, Evaluation], None]


@dataclass
class AlarmStatus:
    state: AlarmState = AlarmState.INSUFFICIENT_DATA
    last: Evaluation | None = None
    error: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class AlarmWatch:
    """Alarms by name, evaluated against one provider with fixed labels (e.g. the new revision)."""

    def __init__(self, alarms: Mapping[str, Alarm | CloudWatchAlarmRef], provider: MetricProvider, *,
                 labels: dict[str, str] | None = None, on_change: OnChange | None = None,
                 clock: Callable[[], float] = time.time, keep_history: int = 50,
                 states: CloudWatchAlarmStates | None = None) -> None:
        self.alarms, self.provider, self.labels = dict(alarms), provider, dict(labels or {})
        self.on_change, self.clock, self.keep_history = on_change, clock, keep_history
        self.status = {name: AlarmStatus() for name in self.alarms}
        self.states = states or CloudWatchAlarmStates()
        self._read_at: dict[str, float] = {}

    @property
    def interval(self) -> float:
        """How often to tick: a few times per shortest period, so a breach is seen soon after it closes."""
        periods = [a.poll * 4 if isinstance(a, CloudWatchAlarmRef) else a.period
                   for a in self.alarms.values()] or [1.0]
        return max(0.2, min(min(periods) / 4, 5.0))

    async def _read(self, name: str, ref: CloudWatchAlarmRef, st: AlarmStatus, now: float) -> None:
        if now - self._read_at.get(name, float("-inf")) < ref.poll:
            return
        self._read_at[name] = now
        try:
            value, why = await self.states.read(ref.cloudwatch, AwsSettings(ref.region, ref.endpoint_url))
        except MonitoringError as exc:
            st.error = str(exc)
            return
        st.error = None
        state = AlarmState(value) if value in AlarmState.__members__ else AlarmState.INSUFFICIENT_DATA
        ev = Evaluation(state, st.state, [], [], 0, f"CloudWatch: {why}" if why else "CloudWatch")
        self._record(name, ref, st, ev, now)

    def _record(self, name: str, alarm: Alarm | CloudWatchAlarmRef, st: AlarmStatus, ev: Evaluation,
                now: float) -> None:
        st.last = ev
        st.history.append({"at": round(now, 3), "values": _round(ev.values), "state": str(ev.state)})
        del st.history[:-self.keep_history]
        if ev.changed:
            st.state = ev.state
            if self.on_change:
                self.on_change(name, alarm, ev)

    async def tick(self) -> dict[str, AlarmStatus]:
        now = self.clock()
        for name, alarm in self.alarms.items():
            st = self.status[name]
            if isinstance(alarm, CloudWatchAlarmRef):
                await self._read(name, alarm, st, now)
                continue
            window = alarm_window(alarm, now)
            try:
                samples = await self.provider.query(alarm.metric, window,
                                                    labels={**alarm.dimensions, **self.labels} or None)
            except MonitoringError as exc:
                st.error = str(exc)
                continue
            st.error = None
            self._record(name, alarm, st, explain(alarm, aggregate(samples, window, alarm.statistic), st.state), now)
        return self.status

    def firing(self) -> list[str]:
        return [name for name, st in self.status.items() if st.state is AlarmState.ALARM]

    def unreadable(self) -> list[str]:
        """CloudWatch alarms whose state could not be read at the last poll (and may not be ignored)."""
        return [name for name, st in self.status.items() if st.error is not None
                and isinstance(a := self.alarms[name], CloudWatchAlarmRef) and not a.ignore_poll_failure]

    def reason(self, name: str) -> str:
        """One line for a rollback reason: which alarm, on what, and the values that tripped it."""
        alarm, st = self.alarms[name], self.status[name]
        ev = st.last
        if isinstance(alarm, CloudWatchAlarmRef):
            if st.error is not None and st.state is not AlarmState.ALARM:
                return f"alarm {name} cannot be read ({st.error}; ignore_poll_failure: true carries on)"
            return f"alarm {name} in ALARM ({ev.reason if ev else 'CloudWatch'})"
        values = ", ".join("-" if v is None else f"{v:.4g}" for v in (ev.values if ev else []))
        return (f"alarm {name} in ALARM: {alarm.metric} {alarm.statistic} {alarm.comparison} {alarm.threshold:g} "
                f"({ev.reason if ev else ''}; per-period values: [{values}])")

    def to_dict(self) -> dict[str, Any]:
        """What the step detail stores and `shipyard show` prints."""
        out: dict[str, Any] = {}
        for name, st in self.status.items():
            a = self.alarms[name]
            if isinstance(a, CloudWatchAlarmRef):
                out[name] = {"cloudwatch": a.cloudwatch, "poll": a.poll, "labels": self.labels, "state": str(st.state),
                             "error": st.error, "last": st.last.to_dict() if st.last else None,
                             "history": st.history}
                continue
            out[name] = {"metric": a.metric, "statistic": a.statistic, "period": a.period,
                         "comparison": a.comparison, "threshold": a.threshold,
                         "m_of_n": list(a.m_of_n), "treat_missing_data": a.treat_missing_data,
                         "labels": self.labels, "state": str(st.state), "error": st.error,
                         "last": st.last.to_dict() if st.last else None, "history": st.history}
        return out


def _round(values: list[float | None]) -> list[float | None]:
    return [None if v is None else round(v, 6) for v in values]


def event_data(name: str, alarm: Alarm | CloudWatchAlarmRef, ev: Evaluation,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The payload of an `alarm.<state>` event."""
    if isinstance(alarm, CloudWatchAlarmRef):
        return {"alarm": name, "state": str(ev.state), "previous": str(ev.previous), "cloudwatch": alarm.cloudwatch,
                "reason": ev.reason, "labels": dict(labels or {})}
    return {"alarm": name, "state": str(ev.state), "previous": str(ev.previous), "metric": alarm.metric,
            "statistic": alarm.statistic, "comparison": alarm.comparison, "threshold": alarm.threshold,
            "values": _round(ev.values), "evaluated": _round(ev.evaluated), "breaching": ev.breaching,
            "reason": ev.reason, "labels": dict(labels or {})}
