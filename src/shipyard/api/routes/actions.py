"""Writes: deploy, roll back, cancel a queued deployment, promote, recover: the same engine requests the CLI
makes (scope `deploy` on the environment concerned; a recover of every env needs `admin`), with the token's
name as the actor. Deploy and rollback answer 202 once the deployment is recorded; follow it at its URL or
its event stream. Errors are the CLI's: 400 bad names, 404 unknown ids, 409 conflicts (frozen, running)."""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from shipyard.api.auth import check_env, require, store_of
from shipyard.api.schemas import Problem
from shipyard.store import deployments as dq
from shipyard.store import tokens as tq
from shipyard.store.models import ApiToken

Deployer = Annotated[ApiToken, Depends(require("deploy"))]
router = APIRouter(tags=["actions"], responses={400: {"model": Problem}, 401: {"model": Problem},
                                                403: {"model": Problem}, 409: {"model": Problem}})
NAME = Field(min_length=1, max_length=128)


class Runner(Protocol):
    async def deploy(self, service: str, env: str, *, rev: str | None, strategy: str | None, actor: str) -> str:
        """Start a deploy; the deployment's id once it is recorded."""
        ...

    async def rollback(self, service: str, env: str, *, actor: str) -> str:
        """Start a rollback to the previous good revision; its deployment's id."""
        ...

    def environments(self) -> list[str]:
        """The project's environments, in config order."""
        ...

    async def status(self, service: str | None, envs: list[str]) -> dict[str, Any]:
        """`shipyard status --json` of these envs (every service, or `service`)."""
        ...

    async def cancel(self, deployment_id: str, *, actor: str, reason: str) -> dict[str, Any]:
        """Close a queued deployment as cancelled; NotFoundError, NotCancellable (running or finished)."""
        ...

    async def promote(self, source: str, target: str, *, message: str, only: list[str], group: str | None,
                      dry_run: bool, no_deploy: bool, confirm: str | None, actor: str) -> dict[str, Any]:
        """`shipyard promote SOURCE TARGET [--dry-run] --json`, confirmed: the plan, the outcome, the deploys."""
        ...

    async def recover(self, *, service: str | None, env: str | None, actor: str) -> list[dict[str, Any]]:
        """`shipyard recover`: finish or roll back the runs a dead process left; one line per run."""
        ...


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")        # a misspelt field is an error, not silently ignored

    service: str = Field(min_length=1, max_length=128)
    env: str = Field(min_length=1, max_length=128)
    rev: str | None = Field(default=None, max_length=255, description="Branch, tag or sha (default: the env's "
                                                                       "branch tip).")
    strategy: str | None = Field(default=None, max_length=64, description="Override the configured strategy.")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: str = Field(min_length=1, max_length=128)
    env: str = Field(min_length=1, max_length=128)


class Accepted(BaseModel):
    id: str
    url: str
    events: str


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500, description="Why (recorded with the token's name).")


class Cancelled(BaseModel):
    id: str
    service: str
    env: str
    state: str
    reason: str | None
    actor: str


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, max_length=128, description="Environment promoted from (dev).")
    target: str = Field(min_length=1, max_length=128, description="Environment promoted to (stg).")
    message: str = Field(default="", max_length=1000, description="Merge commit and tag message.")
    only: list[Annotated[str, NAME]] = Field(default_factory=list, max_length=500, description="Only these repos.")
    group: str | None = Field(default=None, min_length=1, max_length=128, description="Only this group's repos.")
    dry_run: bool = Field(default=False, description="Answer the plan (and any conflicts); push nothing.")
    no_deploy: bool = Field(default=False, description="Do not deploy an auto_deploy target afterwards.")
    confirm: str | None = Field(default=None, max_length=128, description="The target env's name: required when "
                                "it has `confirm: twice` (the request itself is the first confirmation).")


class Promoted(BaseModel):
    plan: dict[str, Any]
    outcome: dict[str, Any] | None = Field(description="The promotion's record (null for a dry run).")
    deployments: list[dict[str, Any]]


class RecoverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: str | None = Field(default=None, min_length=1, max_length=128)
    env: str | None = Field(default=None, min_length=1, max_length=128,
                            description="Only this env's runs (scope deploy on it); without: every env (admin).")


class RecoveredRun(BaseModel):
    id: str
    service: str
    env: str
    state: str
    reason: str | None


class Recovered(BaseModel):
    recovered: list[RecoveredRun]


def runner_of(request: Request) -> Runner:
    runner: Runner | None = request.app.state.settings.runner
    if runner is None:
        raise HTTPException(503, "this server was started without an engine (read-only)")
    return runner


def _accepted(dep_id: str) -> Accepted:
    url = f"/api/v1/deployments/{dep_id}"
    return Accepted(id=dep_id, url=url, events=f"{url}/events/stream")


@router.post("/deployments", status_code=202, response_model=Accepted, summary="Deploy a revision")
async def post_deployment(request: Request, body: DeployRequest, token: Deployer) -> Accepted:
    check_env(token, body.env)
    dep_id = await runner_of(request).deploy(body.service, body.env, rev=body.rev, strategy=body.strategy,
                                           actor=token.name)
    return _accepted(dep_id)


@router.post("/rollbacks", status_code=202, response_model=Accepted, summary="Roll back to the previous good "
                                                                            "revision")
async def post_rollback(request: Request, body: RollbackRequest, token: Deployer) -> Accepted:
    check_env(token, body.env)
    return _accepted(await runner_of(request).rollback(body.service, body.env, actor=token.name))


@router.post("/deployments/{deployment_id}/cancel", response_model=Cancelled, summary="Cancel a queued deployment",
             responses={404: {"model": Problem}})
async def post_cancel(request: Request, deployment_id: str, token: Deployer,
                      body: CancelRequest | None = None) -> Cancelled:
    """Only a deployment waiting in the queue: its run ends without touching anything. A running one is
    a 409 (undo it with a rollback), so is a finished one."""
    with store_of(request).session(readonly=True) as s:
        row = dq.get_deployment(s, deployment_id)
        if row is None:
            raise HTTPException(404, f"no deployment {deployment_id!r}")
        check_env(token, row.env)
    done = await runner_of(request).cancel(deployment_id, actor=token.name, reason=(body or CancelRequest()).reason)
    return Cancelled(**done)


@router.post("/promotions", response_model=Promoted, summary="Promote one environment's branches into another's",
             responses={404: {"model": Problem}})
async def post_promotion(request: Request, body: PromoteRequest, token: Deployer) -> Promoted:
    """What `shipyard promote SOURCE TARGET` does, in the server (the request is the confirmation; a target
    with `confirm: twice` also wants its name in `confirm`): its answer is the plan and the promotion's
    record, and the deploys of an auto_deploy target. Nothing to promote, a conflict, a frozen target, an
    unfinished promotion or a rejected push: 409 (a rejected push's pushed repos are put back)."""
    check_env(token, body.target)
    done = await runner_of(request).promote(body.source, body.target, message=body.message, only=body.only,
                                            group=body.group, dry_run=body.dry_run, no_deploy=body.no_deploy,
                                            confirm=body.confirm, actor=token.name)
    return Promoted(**done)


@router.post("/recover", response_model=Recovered, summary="Finish or roll back runs a dead process left")
async def post_recover(request: Request, token: Deployer, body: RecoverRequest | None = None) -> Recovered:
    body = body or RecoverRequest()
    if body.env is None and (not tq.allows(token, "admin") or tq.envs_of(token) is not None):
        raise HTTPException(403, f"the token {token.name!r} needs the 'admin' scope to recover every environment "
                                 "(or name one with env)")
    if body.env is not None:
        check_env(token, body.env)
    done = await runner_of(request).recover(service=body.service, env=body.env, actor=token.name)
    return Recovered(recovered=[RecoveredRun(**r) for r in done])
