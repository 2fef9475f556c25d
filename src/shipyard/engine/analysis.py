"""What an Analyze step watches besides health: the service's alarms and, on a canary, the judge.

One `Analysis` lives for the whole run, so alarm states and the router provider's counter snapshots carry
over from one canary step to the next (an alarm does not restart from INSUFFICIENT_DATA at each weight).
Alarms are evaluated on the new revision only (labels {"revision": new}); the judge compares it with the
old revision over the step's own window. Both record everything they saw in the step's detail, which
`shipyard show` prints: the samples, the thresholds and the verdicts.

Layering: this module knows settings, a journal and a metric provider, never the Run that uses it
(engine.run imports it, not the other way round). What it needs of the run at each step, the baseline
revision when the old set still gets traffic, is passed in as a callable.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from shipyard.engine.journal import Journal
from shipyard.engine.settings import ServiceSettings
from shipyard.errors import AnalysisFailed, HealthCheckError, MonitoringError
from shipyard.monitoring.base import MetricProvider, Window
from shipyard.monitoring.judge import JudgeConfig, MetricCheck, Verdict, apply_policy, judge
from shipyard.monitoring.watch import AlarmWatch, event_data

HEALTH_POLL = 0.2
SAMPLE_EVERY = 1.0      # the judge's sampling interval (router snapshots) when no alarm ticks faster


def judge_config(cfg: Any) -> JudgeConfig | None:
    """The config model (config.deploy.CanaryAnalysis) as the pure judge's input."""
    if cfg is None:
        return None
    return JudgeConfig(metrics=tuple(MetricCheck(m.metric, m.direction, m.tolerance, m.min_delta, m.weight)
                                     for m in cfg.metrics),
                       alpha=cfg.alpha, pass_score=cfg.pass_score, marginal_score=cfg.marginal_score,
                       min_samples=cfg.min_samples, min_requests=cfg.min_requests, no_data=cfg.no_data)


Baseline = Callable[[], Awaitable[str | None]]
"""The old revision when some of its instances are still routed (the judge's baseline), else None."""


@dataclass
class Analysis:
    revision: str
    journal: Journal
    baseline: Baseline
    provider: MetricProvider
    watch: AlarmWatch | None
    judge: JudgeConfig | None
    no_data_wait: float = 0.0

    @classmethod
    def build(cls, settings: ServiceSettings, revision: str, journal: Journal, provider: MetricProvider,
              baseline: Baseline) -> Analysis:
        watch = None
        if settings.alarms:
            labels = {"revision": revision}

            def changed(name: str, alarm: Any, ev: Any) -> None:
                journal.event(f"alarm.{str(ev.state).lower()}", f"{name}: {ev.previous} -> {ev.state}: {ev.reason}",
                              **event_data(name, alarm, ev, labels))

            watch = AlarmWatch(settings.alarms, provider, labels=labels, on_change=changed)
        cfg = settings.analysis
        return cls(revision, journal, baseline, provider, watch, judge_config(cfg),
                   float(getattr(cfg, "no_data_wait", 0.0) or 0.0))

    @property
    def active(self) -> bool:
        return self.watch is not None or self.judge is not None

    async def _collect(self) -> None:
        collect = getattr(self.provider, "collect", None)
        if collect is not None:
            with contextlib.suppress(MonitoringError):
                await collect()

    async def bake(self, seconds: float, unhealthy: Callable[[], list[str]]) -> dict[str, Any]:
        """Watch for `seconds`; raise HealthCheckError or AnalysisFailed (with the evidence) to roll back."""
        start = time.time()
        deadline = time.monotonic() + seconds
        await self._collect()
        await self._watch_until(deadline, unhealthy)
        detail: dict[str, Any] = {}
        if self.watch is not None:
            detail["alarms"] = self.watch.to_dict()
        baseline = await self.baseline() if self.judge is not None else None
        if self.judge is not None and baseline and baseline != self.revision:
            verdict = await self._judge(start, baseline)
            action = apply_policy(verdict, self.judge.no_data, final=self.no_data_wait <= 0)
            if action == "wait":
                self.journal.event("analysis.waiting", f"{verdict.reason}; collecting up to "
                                       f"{self.no_data_wait:g}s more", reason=verdict.reason)
                await self._watch_until(time.monotonic() + self.no_data_wait, unhealthy,
                                        stop_on_data=(start, baseline))
                verdict = await self._judge(start, baseline)
                action = apply_policy(verdict, self.judge.no_data, final=True)
            detail["canary"] = verdict.to_dict()
            detail["canary"]["action"] = action
            self.journal.event(f"analysis.{verdict.verdict}", verdict.reason, score=verdict.score,
                                   verdict=verdict.verdict, action=action, baseline=baseline)
            if self.watch is not None:
                detail["alarms"] = self.watch.to_dict()
            if action == "fail":
                why = verdict.reason if verdict.verdict != "nodata" else f"no-data policy {self.judge.no_data}: " \
                                                                          f"{verdict.reason}"
                raise AnalysisFailed(f"canary analysis failed: {why}", detail)
        return detail

    async def _watch_until(self, deadline: float, unhealthy: Callable[[], list[str]],
                           stop_on_data: tuple[float, str] | None = None) -> None:
        interval = min(self.watch.interval if self.watch else SAMPLE_EVERY, SAMPLE_EVERY)
        next_tick = time.monotonic()
        while True:
            bad = unhealthy()
            if bad:
                raise HealthCheckError(f"unhealthy during analysis: {', '.join(bad)}")
            now = time.monotonic()
            if self.active and now >= next_tick:
                next_tick = now + interval
                if self.watch is not None:
                    await self.watch.tick()
                    firing = self.watch.firing() + self.watch.unreadable()
                    if firing:
                        raise AnalysisFailed("; ".join(self.watch.reason(n) for n in firing),
                                             {"alarms": self.watch.to_dict()})
                else:
                    await self._collect()
                if stop_on_data is not None and self.judge is not None:
                    verdict = await self._judge(*stop_on_data)
                    if verdict.verdict != "nodata":
                        return
            if now >= deadline:
                return
            await asyncio.sleep(max(0.0, min(HEALTH_POLL, deadline - now, max(0.0, next_tick - now))))

    async def _judge(self, start: float, baseline: str) -> Verdict:
        assert self.judge is not None
        window = Window(start, time.time() + 1e-6, SAMPLE_EVERY)
        canary: dict[str, list[float]] = {}
        base: dict[str, list[float]] = {}
        for check in self.judge.metrics:
            canary[check.metric] = await self._values(check.metric, window, self.revision)
            base[check.metric] = await self._values(check.metric, window, baseline)
        requests = None
        if self.judge.min_requests:
            requests = sum(await self._values("request_count", window, self.revision))
        return judge(self.judge, canary, base, canary_requests=requests)

    async def _values(self, metric: str, window: Window, revision: str) -> list[float]:
        try:
            return [s.value for s in await self.provider.query(metric, window, labels={"revision": revision})]
        except MonitoringError:
            return []
