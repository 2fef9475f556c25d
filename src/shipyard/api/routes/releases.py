"""Release groups: list and read group runs (scope `read`, limited to the token's environments), and start
one (scope `deploy` on its environment; going through a freeze needs `admin`). A start answers 202 once the
group run is recorded; its members and their deployments are at its URL as they go."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from shipyard.api.auth import check_env, env_filter, require, store_of
from shipyard.api.routes.actions import Deployer, _Admission, _check_admin, runner_of
from shipyard.api.schemas import Problem
from shipyard.store import groups as gq
from shipyard.store.models import ApiToken, ReleaseGroupRun

Reader = Annotated[ApiToken, Depends(require("read"))]
router = APIRouter(tags=["releases"], responses={401: {"model": Problem}, 403: {"model": Problem}})


class ReleaseRequest(BaseModel):
    """POST /releases: `shipyard release NAME --env ENV [--rev ...]`."""

    name: str = Field(min_length=1, max_length=128, description="The release group (under `releases:`).")
    env: str = Field(min_length=1, max_length=128)
    rev: list[Annotated[str, Field(max_length=400)]] = Field(
        default_factory=list, max_length=100, description="SERVICE=REF for one member, or a bare REF for every "
                                                          "member (default: each member's env branch tip).")
    no_wait: bool = Field(default=False, description="Refuse (409) instead of queueing behind a member's deploy.")
    override_freeze: bool = Field(default=False, description="Go ahead although the environment is frozen "
                                                             "(scope admin; needs `reason`).")
    reason: str | None = Field(default=None, max_length=500, description="Why the freeze is overridden.")

    model_config = _Admission.model_config

    def override(self) -> str | None:
        if self.override_freeze and not (self.reason or "").strip():
            raise HTTPException(422, "override_freeze needs a reason: why the frozen environment is deployed anyway")
        return (self.reason or "").strip() if self.override_freeze else None


class ReleaseAccepted(BaseModel):
    id: str
    url: str


@router.get("/releases", summary="Release group runs, newest first, with their members")
def list_releases(request: Request, token: Reader, env: str | None = None,
                  name: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 20) -> dict[str, Any]:
    stmt = env_filter(select(ReleaseGroupRun), token, ReleaseGroupRun.env, env)
    if name:
        stmt = stmt.where(ReleaseGroupRun.name == name)
    stmt = stmt.order_by(ReleaseGroupRun.created_at.desc(), ReleaseGroupRun.id.desc()).limit(limit)
    with store_of(request).session(readonly=True) as s:
        return {"releases": [gq.group_dict(g, gq.members(s, g.id)) for g in s.scalars(stmt)]}


@router.get("/releases/{release_id}", summary="One release group run and its members",
            responses={404: {"model": Problem}})
def get_release(request: Request, release_id: str, token: Reader) -> dict[str, Any]:
    with store_of(request).session(readonly=True) as s:
        row = gq.get_group(s, release_id)
        if row is None:
            raise HTTPException(404, f"no release {release_id!r}")
        check_env(token, row.env)
        return {"release": gq.group_dict(row, gq.members(s, release_id))}


@router.post("/releases", status_code=202, response_model=ReleaseAccepted, summary="Release a group",
             responses={400: {"model": Problem}, 409: {"model": Problem}})
async def post_release(request: Request, body: ReleaseRequest, token: Deployer) -> ReleaseAccepted:
    check_env(token, body.env)
    override = body.override()
    if override is not None:
        _check_admin(token, body.env, f"override a freeze of {body.env}")
    gid = await runner_of(request).release(body.name, body.env, revs=body.rev, actor=token.name,
                                           override=override, no_wait=body.no_wait)
    return ReleaseAccepted(id=gid, url=f"/api/v1/releases/{gid}")
