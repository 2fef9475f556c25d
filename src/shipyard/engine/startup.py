"""Waiting for started instances: their health probes, and the target's word on whether they exited.

What it tells people, and why each rule:
- `health.changed` when an instance's state changes, once: a rolling deploy waits for every new instance
  at each batch, and an instance already reported healthy is not reported healthy again.
- `health.probe_failed` (a warning) for an instance's first failure that counts; failures that the
  start period forgives (a booting app refusing connections) are no one's trouble yet, so they are only
  kept in the step's detail (`forgiven`), never an event or a notification.
- An instance whose process exits while it is awaited fails the wait at once, with its exit code and log
  path, instead of the health deadline expiring on "connection refused".
"""

from __future__ import annotations

import asyncio
from typing import Any

from shipyard.domain.types import Instance
from shipyard.engine.journal import Journal
from shipyard.errors import HealthCheckError
from shipyard.health.checker import ReportedHealth, wait_healthy
from shipyard.health.probes import ProbeResult
from shipyard.health.tracker import HealthState
from shipyard.targets.base import ReportingTarget, Target

EXIT_POLL = 0.2          # seconds between looks at the target while waiting (the agent's first backoff is 0.5 s)
EXITED_STATES = ("backoff", "exited", "failed")


class InstanceExited(HealthCheckError):
    """A started instance's process exited while shipyard waited for it to become healthy."""


def exit_report(inst: Instance) -> str:
    """One line on how an instance ended: exit code (or signal), restarts, where its log is."""
    if inst.exit_code is not None:
        how = f"exited with code {inst.exit_code}"
    elif inst.signal is not None:
        how = f"was killed by signal {inst.signal}"
    else:
        how = "exited"
    again = f", restarted {inst.restarts}x" if inst.restarts else ""
    log = f"; log: {inst.log_path}" if inst.log_path else ""
    return f"instance {inst.id} {how} right after it started{again}{log}"


def reported(target: object) -> ReportedHealth | None:
    """The target's own health report when it gives one (ECS), else None: the check probes the address."""
    return ReportedHealth(target.instance_health) if isinstance(target, ReportingTarget) else None


class StartWatch:
    """One per run: remembers what it reported, so later waits of the same run do not repeat it."""

    def __init__(self, journal: Journal, target: Target, check: Any, deadline: float) -> None:
        self.journal, self.target, self.check, self.deadline = journal, target, check, deadline
        self.reported: dict[str, HealthState] = {}
        self.failed: set[str] = set()
        self.forgiven: dict[str, str] = {}

    async def wait(self, instances: list[Instance]) -> dict[str, Any]:
        """Until every instance is healthy; HealthCheckError (InstanceExited for an exit) otherwise."""
        if not instances:
            return {"healthy": []}
        probing = asyncio.create_task(wait_healthy(self.check, [i.address for i in instances],
                                                   deadline=self.deadline, on_change=self._changed,
                                                   on_probe=self._probed, prober=reported(self.target)))
        watching = asyncio.create_task(self._watch_exits({i.id for i in instances}))
        try:
            done, _ = await asyncio.wait({probing, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (probing, watching):
                task.cancel()
            await asyncio.gather(probing, watching, return_exceptions=True)
        if watching in done:
            watching.result()                   # raises InstanceExited
        probing.result()
        detail: dict[str, Any] = {"healthy": [i.address for i in instances]}
        forgiven = {a: d for a, d in self.forgiven.items() if a in detail["healthy"]}
        if forgiven:
            detail["forgiven"] = forgiven       # failures inside start_period: booting, not trouble
        return detail

    def _changed(self, address: str, state: HealthState, result: ProbeResult) -> None:
        if self.reported.get(address) is state:
            return
        self.reported[address] = state
        self.journal.event("health.changed", f"{address} {state.value}: {result.detail}", address=address,
                           state=state.value, detail=result.detail)

    def _probed(self, address: str, result: ProbeResult, counted: bool) -> None:
        if result.ok:
            return
        if not counted:
            self.forgiven.setdefault(address, result.detail)
        elif address not in self.failed:
            self.failed.add(address)
            self.journal.event("health.probe_failed", f"{address}: {result.detail}", address=address,
                               detail=result.detail)

    async def _watch_exits(self, ids: set[str]) -> None:
        while True:
            known = {i.id: i for i in await self.target.instances()}
            for iid in sorted(ids):
                inst = known.get(iid)
                if inst is None:
                    raise InstanceExited(f"instance {iid} is gone: its process exited and the target did not "
                                         "restart it")
                if inst.state in EXITED_STATES or inst.restarts > 0:
                    raise InstanceExited(exit_report(inst))
            await asyncio.sleep(EXIT_POLL)
