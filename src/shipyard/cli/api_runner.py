"""The engine requests the API makes (deploy, rollback, cancel, promote, recover; and status), run inside
`shipyard serve` exactly as the CLI runs them: the same checks first (unknown names, missing secrets:
refused and recorded), the same engine calls, the project's agent. A deploy answers as soon as its
deployment is recorded (queued); the run goes on in the server, and its progress is in the deployment's
events (and their stream).

On shutdown the server waits (bounded) for runs in progress; one cut off by a kill is finished or rolled
back by `shipyard recover`, as after a CLI that died.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from shipyard.cli.deploy import recover_runs
from shipyard.cli.project import Project
from shipyard.cli.status import status_rows
from shipyard.engine import deployer
from shipyard.engine.admission import record_refused
from shipyard.engine.cancel import cancel_queued
from shipyard.engine.deployer import Environment, Outcome
from shipyard.errors import PushFailed, ShipyardError, UsageError
from shipyard.store import deployments as dq
from shipyard.store import leases as lq

Action = Callable[[Environment], Awaitable[Outcome]]


class NothingToPromote(ShipyardError):
    """Every repo was skipped: nothing was pushed (the API's 409)."""


class ProjectRunner:
    """Implements shipyard.api.routes.actions.Runner for one project."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.tasks: set[asyncio.Task[Any]] = set()
        self._agent_ready = False
        self._resuming: set[str] = set()
        self._runs: dict[asyncio.Task[Any], str] = {}      # task -> its deployment's id, once recorded

    async def deploy(self, service: str, env: str, *, rev: str | None, strategy: str | None, actor: str) -> str:
        return await self._start(service, env, actor,
                                 lambda e: deployer.deploy(e, rev, wait=True, strategy=strategy))

    async def rollback(self, service: str, env: str, *, actor: str) -> str:
        return await self._start(service, env, actor, lambda e: deployer.rollback(e, wait=True))

    def environments(self) -> list[str]:
        return list(self.project.config.environments)

    async def status(self, service: str | None, envs: list[str]) -> dict[str, Any]:
        return await status_rows(self.project, service, envs)

    async def cancel(self, deployment_id: str, *, actor: str, reason: str) -> dict[str, Any]:
        return await asyncio.to_thread(cancel_queued, self.project.store, deployment_id, actor=actor, reason=reason,
                                       notifications=self.project.config.notifications)

    async def promote(self, source: str, target: str, *, message: str, only: list[str], group: str | None,
                      dry_run: bool, no_deploy: bool, confirm: str | None, actor: str) -> dict[str, Any]:
        from shipyard.cli import promote as cli_promote  # the fleet: loaded for promotions only
        from shipyard.fleet.context import FleetContext
        from shipyard.fleet.execute import execute
        from shipyard.fleet.promote import prepare_promotion

        project = self.project
        ctx = FleetContext(project.config, project.root, project.store, actor)
        prepared = await prepare_promotion(ctx, source, target, message=message, only=only, group=group)
        cli_promote.settle(ctx, prepared, dry_run=dry_run)
        plan = cli_promote.plan_dict(prepared)
        if dry_run:
            return {"plan": plan, "outcome": None, "deployments": []}
        if cli_promote.nothing_to_push(prepared):
            raise NothingToPromote(f"nothing to promote from {source} to {target}: every repo was skipped")
        # The request is the first confirmation; `confirm: twice` also wants the env's name typed, here in
        # the body, as the CLI's second question does.
        twice = [e for e in prepared.plan.target_envs if project.config.environments[e].confirm == "twice"]
        if twice and confirm != prepared.plan.target_env:
            raise UsageError(f"{prepared.plan.target_env} has confirm: twice: repeat its name in the request "
                             f"(\"confirm\": \"{prepared.plan.target_env}\"); nothing was pushed")
        outcome = await execute(ctx, prepared)
        if outcome.state != "completed":
            raise PushFailed(cli_promote.failure_line(outcome))
        deployed = await cli_promote.deploy_promoted(project, outcome, no_deploy=no_deploy, actor_name=actor,
                                                     start_agent=self._ensure_agent)
        return {"plan": plan, "outcome": outcome.as_dict(), "deployments": deployed}

    async def recover(self, *, service: str | None, env: str | None, actor: str) -> list[dict[str, Any]]:
        with self.project.store.session(readonly=True) as s:
            if not dq.find_unfinished(s, service=service, env=env):
                return []           # nothing left behind: no agent needed
        await self._ensure_agent()
        async with self.project.agent(start=False) as agent:
            return await recover_runs(self.project, agent, service=service, env=env, actor_name=actor)

    async def resume(self, deployment_id: str) -> None:
        """Take over a gated deployment whose waiting process died and run it when its gate opens (the
        daemon's approvals work); the run is one of this server's tasks, awaited on shutdown."""
        if deployment_id in self._resuming:
            return
        with self.project.store.session(readonly=True) as s:
            row = dq.get_deployment(s, deployment_id)
            if row is None:
                return
            service, env = row.service, row.env
        await self._ensure_agent()
        self._resuming.add(deployment_id)

        async def run() -> Outcome | None:
            try:
                async with self.project.agent(start=False) as agent:
                    return await deployer.resume_approved(self.project.environment(service, env, agent),
                                                          deployment_id)
            finally:
                self._resuming.discard(deployment_id)

        task = asyncio.create_task(run())
        self.tasks.add(task)
        self._runs[task] = deployment_id
        task.add_done_callback(self._done)

    async def _ensure_agent(self) -> None:
        if not self._agent_ready:
            await asyncio.to_thread(self.project.ensure_agent)
            self._agent_ready = True

    async def _start(self, service: str, env: str, actor: str, action: Action) -> str:
        project = self.project
        project.settings(service, env)                       # unknown names: UsageError, nothing recorded
        try:
            project.secrets.resolve(service, env)
        except ShipyardError as exc:
            record_refused(project.store, service, env, exc, actor=actor, redactor=project.redactor,
                           notifications=project.config.notifications)
            raise
        await self._ensure_agent()
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
        task.add_done_callback(self._done)
        waiting: set[asyncio.Future[Any]] = {queued, task}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if queued.done():
            self._runs[task] = queued.result()
            return queued.result()
        task.result()          # refused before anything was recorded (frozen, a bad revision): its error
        raise ShipyardError(f"{service}/{env}: the run ended before its deployment was recorded")

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        self._runs.pop(task, None)
        if not task.cancelled():
            task.exception()    # taken: a run's end (a wait cancelled, a refusal) is in its record and events

    def _awaiting_approval(self, deployment_id: str) -> bool:
        """Still waiting for people (not yet taking its lease to start)."""
        with self.project.store.session(readonly=True) as s:
            row = dq.get_deployment(s, deployment_id)
            if row is None or row.state != "awaiting_approval":
                return False
            lease = lq.get_lease(s, row.service, row.env)
            return lease is None or lease.deployment_id != deployment_id

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for runs in progress (the server is stopping). Runs still awaiting
        approval are let go at once: people may take hours, and the next daemon takes their wait over
        (engine.approvals), approvals given so far kept."""
        for task in [t for t, dep_id in self._runs.items() if self._awaiting_approval(dep_id)]:
            task.cancel()
        if self.tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), timeout)
