"""The engine requests the API makes (deploy, rollback), run inside `shipyard serve` exactly as the CLI runs
them: the same checks first (unknown names, missing secrets: refused and recorded), the same engine calls,
the project's agent. A request answers as soon as its deployment is recorded (queued); the run goes on in
the server, and its progress is in the deployment's events (and their stream).

On shutdown the server waits (bounded) for runs in progress; one cut off by a kill is finished or rolled
back by `shipyard recover`, as after a CLI that died.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from shipyard.cli.project import Project
from shipyard.engine import deployer
from shipyard.engine.admission import record_refused
from shipyard.engine.deployer import Environment, Outcome
from shipyard.errors import ShipyardError

Action = Callable[[Environment], Awaitable[Outcome]]


class ProjectRunner:
    """Implements shipyard.api.routes.actions.Runner for one project."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.tasks: set[asyncio.Task[Any]] = set()
        self._agent_ready = False

    async def deploy(self, service: str, env: str, *, rev: str | None, strategy: str | None, actor: str) -> str:
        return await self._start(service, env, actor,
                                 lambda e: deployer.deploy(e, rev, wait=True, strategy=strategy))

    async def rollback(self, service: str, env: str, *, actor: str) -> str:
        return await self._start(service, env, actor, lambda e: deployer.rollback(e, wait=True))

    async def _start(self, service: str, env: str, actor: str, action: Action) -> str:
        project = self.project
        project.settings(service, env)                       # unknown names: UsageError, nothing recorded
        try:
            project.secrets.resolve(service, env)
        except ShipyardError as exc:
            record_refused(project.store, service, env, exc, actor=actor, redactor=project.redactor,
                           notifications=project.config.notifications)
            raise
        if not self._agent_ready:
            await asyncio.to_thread(project.ensure_agent)
            self._agent_ready = True
        queued: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def listener(kind: str, data: dict[str, Any]) -> None:
            if not queued.done() and data.get("deployment_id"):
                queued.set_result(str(data["deployment_id"]))

        async def run() -> Outcome:
            async with project.agent(start=False) as agent:
                e = project.environment(service, env, agent, listener=listener)
                e.actor = actor
                return await action(e)

        task = asyncio.create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        waiting: set[asyncio.Future[Any]] = {queued, task}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if queued.done():
            return queued.result()
        task.result()          # refused before anything was recorded (frozen, a bad revision): its error
        raise ShipyardError(f"{service}/{env}: the run ended before its deployment was recorded")

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for runs in progress (the server is stopping)."""
        if self.tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), timeout)
