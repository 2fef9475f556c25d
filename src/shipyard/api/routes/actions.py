"""Writes: deploy and roll back, the same engine requests the CLI makes (scope `deploy`, on the token's
environments). They answer 202 once the deployment is recorded; follow it at its URL or its event stream."""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from shipyard.api.auth import check_env, require
from shipyard.api.schemas import Problem
from shipyard.store.models import ApiToken

Deployer = Annotated[ApiToken, Depends(require("deploy"))]
router = APIRouter(tags=["actions"], responses={400: {"model": Problem}, 401: {"model": Problem},
                                                403: {"model": Problem}, 409: {"model": Problem}})


class Runner(Protocol):
    async def deploy(self, service: str, env: str, *, rev: str | None, strategy: str | None, actor: str) -> str:
        """Start a deploy; the deployment's id once it is recorded."""
        ...

    async def rollback(self, service: str, env: str, *, actor: str) -> str:
        """Start a rollback to the previous good revision; its deployment's id."""
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


def _runner(request: Request) -> Runner:
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
    dep_id = await _runner(request).deploy(body.service, body.env, rev=body.rev, strategy=body.strategy,
                                           actor=token.name)
    return _accepted(dep_id)


@router.post("/rollbacks", status_code=202, response_model=Accepted, summary="Roll back to the previous good "
                                                                            "revision")
async def post_rollback(request: Request, body: RollbackRequest, token: Deployer) -> Accepted:
    check_env(token, body.env)
    return _accepted(await _runner(request).rollback(body.service, body.env, actor=token.name))
