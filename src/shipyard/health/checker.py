"""Probe a set of instances on the check's schedule: `wait_healthy` gates a deploy step,
`HealthMonitor` keeps watching in the background during bake and analysis.

Rounds are scheduled on a fixed grid (start + k * interval) rather than "sleep interval after each
round", so slow probes do not stretch the schedule and the deadline is honoured on a loaded machine.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Protocol

from shipyard.config.checks import HealthCheck
from shipyard.errors import HealthCheckError, ShipyardError
from shipyard.health.probes import Prober, ProbeResult
from shipyard.health.tracker import HealthState, HealthTracker

log = logging.getLogger(__name__)

OnChange = Callable[[str, HealthState, ProbeResult], Awaitable[None] | None]
"""Called as on_change(address, new_state, probe_result) when an instance changes state."""
OnProbe = Callable[[str, ProbeResult, bool], Awaitable[None] | None]
"""Called as on_probe(address, probe_result, counted) after every probe; `counted` is False for a failure
the start period forgives (a booting instance refusing connections is not trouble yet)."""


class ProbeRunner(Protocol):
    async def probe(self, check: HealthCheck, address: str) -> ProbeResult: ...


class ReportedHealth:
    """A ProbeRunner over what a target reports (targets.base.ReportingTarget.instance_health): the
    schedule, thresholds and start period stay the check's, the verdict is the platform's."""

    def __init__(self, report: Callable[[str], Awaitable[str | None]]) -> None:
        self.report = report

    async def probe(self, check: HealthCheck, address: str) -> ProbeResult:
        started = time.monotonic()
        try:
            # several AWS calls: more than an HTTP probe's second, never unbounded
            async with asyncio.timeout(max(float(check.timeout), 30.0)):
                why = await self.report(address)
        except TimeoutError:
            why = f"the target did not report within {max(float(check.timeout), 30.0):g}s"
        except ShipyardError as exc:
            why = str(exc)
        return ProbeResult(why is None, why or "healthy (as the target reports)", time.monotonic() - started)


class InstancesUnhealthy(HealthCheckError):
    """Instances failed their health check (or ran out of time); `states`/`details` per address."""

    def __init__(self, message: str, states: dict[str, HealthState], details: dict[str, str]) -> None:
        super().__init__(message)
        self.states, self.details = states, details


def _tracker(check: HealthCheck, started_at: float, healthy: bool = False) -> HealthTracker:
    return HealthTracker(check.healthy_threshold, check.unhealthy_threshold, check.start_period,
                         started_at=started_at, initial=HealthState.HEALTHY if healthy else HealthState.STARTING)


async def _notify(callback: Callable[..., Awaitable[None] | None] | None, address: str, *args: object) -> None:
    if callback is None:
        return
    try:
        outcome = callback(address, *args)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:                                    # a broken callback must not stop health checks
        log.exception("health callback failed for %s", address)


async def _round(runner: ProbeRunner, check: HealthCheck, trackers: dict[str, HealthTracker],
                 clock: Callable[[], float], on_change: OnChange | None, on_probe: OnProbe | None = None) -> None:
    """Probe every tracked address once, concurrently, and feed the trackers."""
    addresses = list(trackers)
    results = await asyncio.gather(*(runner.probe(check, address) for address in addresses))
    for address, result in zip(addresses, results, strict=True):
        tracker = trackers.get(address)
        if tracker is None:                              # removed while the round ran
            continue
        before, failures = tracker.state, tracker.failures
        after = tracker.observe(result.ok, clock(), result.detail, answered=result.answered)
        await _notify(on_probe, address, result, result.ok or tracker.failures > failures)
        if after is not before:
            await _notify(on_change, address, after, result)


def _next_tick(tick: int, start: float, now: float, interval: float) -> int:
    """The next grid tick after `now`; ticks missed while a round overran are skipped, not bunched."""
    return max(tick + 1, int((now - start) / interval) + 1)


def _summary(addresses: Iterable[str], trackers: dict[str, HealthTracker]) -> str:
    return "; ".join(f"{a} ({trackers[a].state.value}: {trackers[a].last_detail or 'no probe finished'})"
                     for a in addresses)


async def wait_healthy(check: HealthCheck, addresses: list[str], *, deadline: float,
                       on_change: OnChange | None = None, prober: ProbeRunner | None = None,
                       started_at: float | None = None, on_probe: OnProbe | None = None,
                       clock: Callable[[], float] = time.monotonic) -> dict[str, HealthState]:
    """Probe `addresses` every `check.interval` until all are healthy; return their states.

    `deadline` is a budget in seconds from now (normally `check.deadline`). Raises InstancesUnhealthy
    (a HealthCheckError) naming the instances and their last probe detail as soon as one is unhealthy
    (`unhealthy_threshold` failures after `start_period`), or when the deadline passes first.
    `start_period` counts from `started_at` (a `clock()` time, e.g. when the instances were started)
    or from the call. The first probe round runs at once.
    """
    if not addresses:
        return {}
    own = prober is None
    runner: ProbeRunner = prober if prober is not None else Prober()
    start = clock()
    origin = start if started_at is None else started_at
    trackers = {address: _tracker(check, origin) for address in dict.fromkeys(addresses)}
    try:
        tick = 0
        while True:
            await _round(runner, check, trackers, clock, on_change, on_probe)
            states = {a: t.state for a, t in trackers.items()}
            details = {a: t.last_detail for a, t in trackers.items()}
            bad = [a for a, s in states.items() if s is HealthState.UNHEALTHY]
            if bad:
                raise InstancesUnhealthy(f"{len(bad)} of {len(states)} instance(s) unhealthy: "
                                         + _summary(bad, trackers), states, details)
            if all(s is HealthState.HEALTHY for s in states.values()):
                return states
            now = clock()
            if now >= start + deadline:
                waiting = [a for a, s in states.items() if s is not HealthState.HEALTHY]
                raise InstancesUnhealthy(f"not healthy within {deadline:g}s: " + _summary(waiting, trackers),
                                         states, details)
            tick = _next_tick(tick, start, now, check.interval)
            await asyncio.sleep(max(0.0, min(start + tick * check.interval, start + deadline) - now))
    finally:
        if own and isinstance(runner, Prober):
            await runner.close()


class HealthMonitor:
    """Keep probing a changing set of instances in the background and report state transitions.

    Instances added with `assume_healthy=True` (the default for a monitor: they passed wait_healthy
    already) count every failure at once instead of getting a fresh start period.
    """

    def __init__(self, check: HealthCheck, addresses: Iterable[str] = (), *, on_change: OnChange | None = None,
                 prober: ProbeRunner | None = None, assume_healthy: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.check, self.on_change, self.clock = check, on_change, clock
        self.assume_healthy = assume_healthy
        self._own = prober is None
        self._runner: ProbeRunner = prober if prober is not None else Prober()
        self._trackers: dict[str, HealthTracker] = {}
        self._task: asyncio.Task[None] | None = None
        self._round_done = asyncio.Event()
        self.rounds = 0
        for address in addresses:
            self.add(address)

    # --- membership --------------------------------------------------------------------------------
    def add(self, address: str, *, assume_healthy: bool | None = None) -> None:
        """Start watching `address` (no-op if watched already)."""
        if address not in self._trackers:
            healthy = self.assume_healthy if assume_healthy is None else assume_healthy
            self._trackers[address] = _tracker(self.check, self.clock(), healthy)

    def remove(self, address: str) -> None:
        """Stop watching `address` (e.g. it was drained and stopped)."""
        self._trackers.pop(address, None)

    # --- reading -----------------------------------------------------------------------------------
    def states(self) -> dict[str, HealthState]:
        return {address: tracker.state for address, tracker in self._trackers.items()}

    def details(self) -> dict[str, str]:
        """Last probe detail per address."""
        return {address: tracker.last_detail for address, tracker in self._trackers.items()}

    def unhealthy(self) -> list[str]:
        return [a for a, t in self._trackers.items() if t.state is HealthState.UNHEALTHY]

    async def next_round(self) -> None:
        """Wait until the next full probe round has finished (to read fresh states)."""
        self._round_done.clear()
        await self._round_done.wait()

    # --- lifecycle ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Begin probing in a background task of the running loop."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="health-monitor")

    async def stop(self) -> None:
        """Stop probing (an in-flight round is cancelled; exec probes are killed) and release the client."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        if self._own and isinstance(self._runner, Prober):
            await self._runner.close()

    async def __aenter__(self) -> HealthMonitor:
        self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def _run(self) -> None:
        start, tick = self.clock(), 0
        while True:
            if self._trackers:
                await _round(self._runner, self.check, self._trackers, self.clock, self.on_change)
            self.rounds += 1
            self._round_done.set()
            now = self.clock()
            tick = _next_tick(tick, start, now, self.check.interval)
            await asyncio.sleep(max(0.0, start + tick * self.check.interval - now))
