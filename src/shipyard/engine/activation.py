"""Health of a release target: its `status()` polled on the service's health check schedule.

A release target has no instance address to probe; what it says about the live release (the origin path
points at a prefix holding index.html and the site answers, or the `status` command exits 0) is the
probe. The check's interval, thresholds, start period and deadline apply as they do to instances, so the
rules people know from `health:` hold here too (its `type` and `path` do not: the target decides).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType
from typing import Any

from shipyard.engine.journal import Journal
from shipyard.errors import HealthCheckError, ShipyardError
from shipyard.health.tracker import HealthState, HealthTracker
from shipyard.targets.base import ReleaseTarget

NAME = "release"        # how the live release is named where instances have addresses (unhealthy lists)


async def _probe(target: ReleaseTarget, timeout: float) -> str | None:
    try:
        async with asyncio.timeout(timeout):
            return await target.status()
    except TimeoutError:
        return f"status took longer than {timeout:g}s"
    except (ShipyardError, OSError) as exc:
        return str(exc)


def _tracker(check: Any, healthy: bool = False) -> HealthTracker:
    return HealthTracker(check.healthy_threshold, check.unhealthy_threshold, check.start_period,
                         started_at=time.monotonic(),
                         initial=HealthState.HEALTHY if healthy else HealthState.STARTING)


def _probe_timeout(check: Any) -> float:
    # A status may be a command or several AWS calls: more than an HTTP probe's second, never unbounded.
    return max(float(check.timeout), 30.0)


async def wait_status(target: ReleaseTarget, check: Any, journal: Journal, deadline: float) -> dict[str, Any]:
    """Until `status` is healthy `healthy_threshold` times in a row; HealthCheckError when it turns
    unhealthy (after the start period) or the deadline passes."""
    tracker = _tracker(check)
    end = time.monotonic() + deadline
    last: str | None = None
    probes = 0
    while True:
        why = await _probe(target, _probe_timeout(check))
        probes += 1
        last = why
        state = tracker.observe(why is None, time.monotonic(), why or "", answered=why is None)
        if state is HealthState.HEALTHY:
            journal.event("health.changed", "the live release is healthy", state="healthy", probes=probes)
            return {"healthy": [NAME], "probes": probes}
        if state is HealthState.UNHEALTHY:
            journal.event("health.changed", f"the live release is unhealthy: {why}", state="unhealthy", reason=why)
            raise HealthCheckError(f"the live release is unhealthy: {why}")
        if time.monotonic() + check.interval > end:
            raise HealthCheckError(f"the live release was not healthy within {deadline:g}s"
                                   + (f": {last}" if last else ""))
        await asyncio.sleep(check.interval)


class StatusMonitor:
    """`status` polled in the background during a bake; `unhealthy()` is what Analysis.bake asks."""

    def __init__(self, target: ReleaseTarget, check: Any, journal: Journal) -> None:
        self.target, self.check, self.journal = target, check, journal
        self.tracker = _tracker(check, healthy=True)
        self._task: asyncio.Task[None] | None = None

    def unhealthy(self) -> list[str]:
        return [NAME] if self.tracker.state is HealthState.UNHEALTHY else []

    async def _watch(self) -> None:
        while True:
            why = await _probe(self.target, _probe_timeout(self.check))
            before = self.tracker.state
            after = self.tracker.observe(why is None, time.monotonic(), why or "", answered=why is None)
            if after is not before:
                self.journal.event("health.changed", f"the live release is {after}" + (f": {why}" if why else ""),
                                   state=str(after), reason=why)
            await asyncio.sleep(self.check.interval)

    async def __aenter__(self) -> StatusMonitor:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
