"""The engine requests the API makes (deploy, rollback, cancel, promote, hotfix sync, tag rollback,
unfreeze, recover; and status), run inside `shipyard serve` exactly as the CLI runs them: the same checks
first (unknown names, missing secrets: refused and recorded), the same engine and fleet calls, the
project's agent. A deploy answers as soon as its deployment is recorded (queued; with `no_wait`, once it
holds the lease, so "busy" is the answer itself); the run goes on in the server, and its progress is in
the deployment's events (and their stream).

On shutdown the server waits (bounded) for runs in progress; one cut off by a kill is finished or rolled
back by `shipyard recover`, as after a CLI that died.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from shipyard.cli.deploy import recover_runs
from shipyard.cli.project import Project
from shipyard.cli.status import status_rows
from shipyard.engine import deployer
from shipyard.engine.admission import record_refused
from shipyard.engine.cancel import cancel_queued
from shipyard.engine.deployer import Environment, Outcome
from shipyard.engine.freeze import FreezeOverride
from shipyard.errors import EnvironmentFrozen, PushFailed, ShipyardError, UsageError
from shipyard.store import deployments as dq
from shipyard.store import leases as lq

if TYPE_CHECKING:
    from shipyard.fleet.context import FleetContext, Prepared
    from shipyard.secrets.context import SecretsContext

Action = Callable[[Environment], Awaitable[Outcome]]
Prepare = Callable[["FleetContext"], Coroutine[Any, Any, "Prepared"]]
# What says a run is past the lease (a `no_wait` request's answer waits for one of them, or for its end).
ADMITTED = frozenset({"in_progress", "awaiting_approval"})


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

    async def deploy(self, service: str, env: str, *, rev: str | None, strategy: str | None, actor: str,
                     sets: dict[str, str] | None = None, override: str | None = None,
                     no_wait: bool = False) -> str:
        freeze = FreezeOverride(override) if override else None
        return await self._start(service, env, actor, lambda e: deployer.deploy(
            e, rev, wait=not no_wait, strategy=strategy, override=freeze), sets=sets, no_wait=no_wait)

    async def rollback(self, service: str, env: str, *, actor: str, override: str | None = None,
                       no_wait: bool = False) -> str:
        freeze = FreezeOverride(override) if override else None
        return await self._start(service, env, actor,
                                 lambda e: deployer.rollback(e, wait=not no_wait, override=freeze), no_wait=no_wait)

    def environments(self) -> list[str]:
        return list(self.project.config.environments)

    async def status(self, service: str | None, envs: list[str]) -> dict[str, Any]:
        return await status_rows(self.project, service, envs)

    async def cancel(self, deployment_id: str, *, actor: str, reason: str) -> dict[str, Any]:
        return await asyncio.to_thread(cancel_queued, self.project.store, deployment_id, actor=actor, reason=reason,
                                       notifications=self.project.config.notifications)

    async def promote(self, source: str, target: str, *, message: str, only: list[str], group: str | None,
                      dry_run: bool, no_deploy: bool, confirm: str | None, actor: str) -> dict[str, Any]:
        from shipyard.fleet.promote import prepare_promotion  # the fleet: loaded for promotions only

        return await self._fleet(actor, lambda ctx: prepare_promotion(ctx, source, target, message=message,
                                                                      only=only, group=group),
                                 dry_run=dry_run, no_deploy=no_deploy, confirm=confirm)

    def hotfix_targets(self) -> list[str]:
        from shipyard.fleet.promote import hotfix_chain

        return list(hotfix_chain(self.project.config)[1:])

    async def hotfix_sync(self, *, message: str, only: list[str], group: str | None, dry_run: bool,
                          no_deploy: bool, confirm: str | None, actor: str) -> dict[str, Any]:
        from shipyard.fleet.promote import prepare_hotfix

        return await self._fleet(actor, lambda ctx: prepare_hotfix(ctx, message=message, only=only, group=group),
                                 dry_run=dry_run, no_deploy=no_deploy, confirm=confirm)

    async def tag_rollback(self, env: str, to: str, *, force: bool, message: str, only: list[str],
                           group: str | None, dry_run: bool, no_deploy: bool, confirm: str | None,
                           actor: str) -> dict[str, Any]:
        from shipyard.fleet.rollback import prepare_rollback

        # As `rollback --to`: pushed even when every branch is at the tag already (the freeze is the point).
        return await self._fleet(actor, lambda ctx: prepare_rollback(ctx, env, to, force=force, message=message,
                                                                     only=only, group=group),
                                 dry_run=dry_run, no_deploy=no_deploy, confirm=confirm, push_empty=True)

    async def unfreeze(self, env: str, *, actor: str) -> list[str]:
        from shipyard.fleet.freeze import unfreeze

        config = self.project.config
        if config.environment(env).frozen:      # a team decision written in the repo: not the API's to undo
            raise EnvironmentFrozen(f"{env} is frozen in shipyard.yaml (environments.{env}.frozen: true): edit "
                                    "the config to lift it")
        return await asyncio.to_thread(unfreeze, config, self.project.store, env, actor=actor)

    async def _fleet(self, actor: str, prepare: Prepare, *, dry_run: bool, no_deploy: bool, confirm: str | None,
                     push_empty: bool = False) -> dict[str, Any]:
        """What `drive` does for the CLI, answered as JSON: prepare (a plan with problems: its FleetError),
        the plan alone for a dry run, else confirm, push all or nothing, deploy an auto_deploy target."""
        from shipyard.cli import promote as cli_promote
        from shipyard.fleet.context import FleetContext
        from shipyard.fleet.execute import execute

        project = self.project
        ctx = FleetContext(project.config, project.root, project.store, actor)
        prepared = await prepare(ctx)
        cli_promote.settle(ctx, prepared, dry_run=dry_run)
        plan = cli_promote.plan_dict(prepared)
        if dry_run:
            return {"plan": plan, "outcome": None, "deployments": []}
        if cli_promote.nothing_to_push(prepared, push_empty):
            p = prepared.plan
            into = " → ".join([str(p.source_env), *p.target_envs])
            raise NothingToPromote(f"nothing to {p.kind} ({into}): every repo was skipped; nothing was pushed")
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

    def _secrets(self, sets: dict[str, str] | None) -> SecretsContext:
        """The project's secrets, or (with `--set` values) a context of this request's own: one request's
        overrides never reach another's deploy."""
        if not sets:
            return self.project.secrets
        from shipyard.secrets.context import SecretsContext

        return SecretsContext(self.project.config, self.project.root, redactor=self.project.redactor,
                              overrides=sets)

    async def _start(self, service: str, env: str, actor: str, action: Action, *,
                     sets: dict[str, str] | None = None, no_wait: bool = False) -> str:
        project = self.project
        project.settings(service, env)                       # unknown names: UsageError, nothing recorded
        secrets = self._secrets(sets)
        try:
            secrets.resolve(service, env)
        except ShipyardError as exc:
            record_refused(project.store, service, env, exc, actor=actor, redactor=project.redactor,
                           notifications=project.config.notifications)
            raise
        await self._ensure_agent()
        loop = asyncio.get_running_loop()
        queued: asyncio.Future[str] = loop.create_future()
        admitted: asyncio.Future[None] = loop.create_future()

        def listener(kind: str, data: dict[str, Any]) -> None:
            if not queued.done() and data.get("deployment_id"):
                queued.set_result(str(data["deployment_id"]))
            past_lease = kind == "deploy.started" or (kind == "state" and data.get("state") in ADMITTED)
            if past_lease and not admitted.done():
                admitted.set_result(None)

        async def run() -> Outcome:
            async with project.agent(start=False) as agent:
                e = project.environment(service, env, agent, listener=listener)
                e.actor = actor
                if sets:
                    e.secrets = secrets.environ_for
                return await action(e)

        task = asyncio.create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self._done)
        # With no_wait the answer waits until the run holds the lease: a busy (service, env) is a 409 here,
        # not a 202 whose deployment turns out cancelled a moment later.
        waiting: set[asyncio.Future[Any]] = {admitted if no_wait else queued, task}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if no_wait and task.done() and not admitted.done():
            task.result()      # busy (or refused otherwise) before it held the lease: its error
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
