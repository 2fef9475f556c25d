"""Watching a service after its deploy finished: `shipyard watch` now, the daemon's alarm monitor later.

For each watched (service, env), the alarms of its `deploy.alarms` are evaluated on the revision that
serves (the newest succeeded run). An alarm entering ALARM within `auto_rollback_window` of that run's end
rolls it back (a traffic flip while the previous set is warm); later, the `alarm.alarm` event is all that
happens, and the notification routes tell people. Alarm state changes are events of the serving run, so
they show in `shipyard show` and reach the outbox like every other event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shipyard.engine import deployer
from shipyard.engine.journal import Journal
from shipyard.errors import ShipyardError
from shipyard.monitoring.base import MetricProvider
from shipyard.monitoring.providers.router import RouterProvider
from shipyard.monitoring.watch import AlarmWatch, event_data
from shipyard.store import deployments as dq


@dataclass
class Watched:
    """One (service, env) under watch, bound to the run that serves it."""

    env: deployer.Environment
    window: float                                   # auto_rollback_window, seconds
    provider: MetricProvider
    deployment_id: str | None = None
    revision: str | None = None
    finished_at: datetime | None = None
    watch: AlarmWatch | None = None
    handled: set[str] = field(default_factory=set)  # runs already rolled back by this watcher


@dataclass
class Action:
    service: str
    env: str
    alarm: str
    action: str                                     # "rollback" | "notify" | "rollback-failed"
    deployment_id: str | None
    detail: str = ""


class Watcher:
    def __init__(self, targets: list[Watched], *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.targets, self.clock = targets, clock
        self.actions: list[Action] = []

    @staticmethod
    def watched(env: deployer.Environment, window: float, provider: MetricProvider | None = None) -> Watched:
        return Watched(env, window, provider or env.metrics or RouterProvider(env.router.stats))

    def _bind(self, w: Watched) -> bool:
        """Follow the serving run (a new deploy or a rollback restarts the alarms on its revision)."""
        s = w.env.settings
        with w.env.store.session() as ses:
            current = dq.last_succeeded(ses, s.service, s.env)
            if current is None:
                return False
            dep_id, revision, finished = current.id, current.revision, current.finished_at
        if dep_id != w.deployment_id:
            w.deployment_id, w.revision, w.finished_at = dep_id, revision, finished
            journal = Journal(w.env.store, dep_id, s.service, s.env, redactor=w.env.redactor,
                              notifications=w.env.notifications)
            labels = {"revision": revision}

            def changed(name: str, alarm: Any, ev: Any) -> None:
                journal.event(f"alarm.{str(ev.state).lower()}", f"{name}: {ev.previous} -> {ev.state}: {ev.reason}",
                              **event_data(name, alarm, ev, labels), watcher=True)

            w.watch = AlarmWatch(s.alarms, w.provider, labels=labels, on_change=changed)
        return True

    async def tick(self) -> list[Action]:
        """One evaluation round over every target; returns what it did this round."""
        done: list[Action] = []
        for w in self.targets:
            s = w.env.settings
            if not s.alarms or not self._bind(w) or w.watch is None:
                continue
            await w.watch.tick()
            for name in w.watch.firing():
                if w.deployment_id in w.handled:
                    continue
                age = (self.clock() - w.finished_at).total_seconds() if w.finished_at else float("inf")
                act = Action(s.service, s.env, name, "notify", w.deployment_id, w.watch.reason(name))
                if age <= w.window:
                    w.handled.add(w.deployment_id or "")
                    try:
                        outcome = await deployer.rollback(w.env)
                        act.action, act.detail = "rollback", f"{outcome.deployment_id} {outcome.state}"
                    except ShipyardError as exc:     # recorded and reported; the watch goes on
                        act.action, act.detail = "rollback-failed", str(exc)
                else:
                    w.handled.add(w.deployment_id or "")
                done.append(act)
        self.actions.extend(done)
        return done

    async def run(self, *, interval: float | None = None, until: float | None = None,
                  stop: Callable[[], bool] = lambda: False, stopped: asyncio.Event | None = None) -> None:
        """Tick until `until` (monotonic), `stop()` or the `stopped` event (which also cuts the wait between
        rounds short: the daemon stops it at once); `interval` defaults to the fastest alarm's pace."""
        stopped = stopped or asyncio.Event()
        pace = interval or min([w.watch.interval for w in self.targets if w.watch] or [1.0])
        while not stop() and not stopped.is_set() and (until is None or time.monotonic() < until):
            await self.tick()
            pace = interval or min([w.watch.interval for w in self.targets if w.watch] or [pace])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), pace)
