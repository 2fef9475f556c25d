"""Checklists: confirm a manual checklist item of a deployment.

POST /api/v1/deployments/{id}/checklist/{item} (scope `approve` on the deployment's env, as deciding on
an approval) records the token's name as the one who confirmed it. A pre item counts only while the
deployment waits before its first step, a post item once it succeeded; an item is confirmed once (409
after). The items and their results are in GET /api/v1/deployments/{id} (`checklist`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from shipyard.api.auth import check_env, require, store_of
from shipyard.api.routes.approvals import _env_of, _settings
from shipyard.api.schemas import Problem
from shipyard.engine import checklists
from shipyard.store.models import ApiToken

Approver = Annotated[ApiToken, Depends(require("approve"))]
router = APIRouter(tags=["checklists"])


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=1000, description="A note kept with the confirmation.")


class Confirmed(BaseModel):
    id: str
    item: str
    phase: str
    by: str = Field(description="Who confirmed: the API token's name.")
    at: str
    left: list[str] = Field(description="The deployment's manual pre items still to confirm.")
    state: str


@router.post("/api/v1/deployments/{deployment_id}/checklist/{item}", response_model=Confirmed,
             summary="Confirm a manual checklist item of a deployment",
             responses={s: {"model": Problem} for s in (400, 401, 403, 404, 409)})
async def confirm_item(request: Request, deployment_id: str, item: str, token: Approver,
                       body: ConfirmIn | None = None) -> Confirmed:
    """As the token's name. 409 when it cannot count: no such manual item, confirmed already, or the
    deployment is past waiting for it."""
    check_env(token, _env_of(request, deployment_id))
    done = await asyncio.to_thread(checklists.confirm, store_of(request), deployment_id, item, by=token.name,
                                   via="api", comment=(body or ConfirmIn()).comment,
                                   notifications=_settings(request).notifications)
    return Confirmed(**{**done, "at": done["at"].isoformat()})
