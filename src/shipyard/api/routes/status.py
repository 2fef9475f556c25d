"""What serves now, per service and environment: `shipyard status --json`, gathered by the same function
(the store's records, the agent's instances and health, the router's traffic split, the lease and queue).
With the agent down the answer still comes, from the store and the routers, with `agent: false`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from shipyard.api.auth import check_env, require
from shipyard.api.routes.actions import runner_of
from shipyard.api.schemas import Problem
from shipyard.store import tokens as tq
from shipyard.store.models import ApiToken

router = APIRouter(tags=["status"], responses={400: {"model": Problem}, 401: {"model": Problem},
                                               403: {"model": Problem}})
Reader = Annotated[ApiToken, Depends(require("read"))]


class StatusOut(BaseModel):
    status: list[dict[str, Any]] = Field(description="One row per service and env, as `shipyard status --json`.")
    agent: bool = Field(description="Whether the agent answered (false: instances and health are unknown).")


@router.get("/status", response_model=StatusOut, summary="Revision, instances, traffic and queue per service/env")
async def get_status(request: Request, token: Reader,
                     service: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
                     env: Annotated[str | None, Query(min_length=1, max_length=128)] = None) -> StatusOut:
    runner = runner_of(request)
    if env is not None:
        check_env(token, env)
        envs = [env]
    else:          # a bound token's view: its own environments only
        bound = tq.envs_of(token)
        envs = [e for e in runner.environments() if bound is None or e in bound]
    return StatusOut(**await runner.status(service, envs))
