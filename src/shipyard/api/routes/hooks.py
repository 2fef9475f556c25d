"""POST /api/v1/hooks/git: GitHub and GitLab push webhooks for GitOps (daemon/gitops_watch.py); and
GET /api/v1/gitops/triggers (scope `read`): what GitOps deployed or had refused, newest first.

No API token here (neither provider can send one): the request is authenticated by its signature instead,
GitHub's X-Hub-Signature-256 (HMAC-SHA256 of the raw body with `serve.webhooks.github_secret`) or
GitLab's X-Gitlab-Token (`serve.webhooks.gitlab_token`). A delivery id seen before is a replay (409)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from shipyard.api.auth import env_filter, require, store_of
from shipyard.api.schemas import GitTriggerOut, Problem
from shipyard.daemon.gitops_watch import HookRefused
from shipyard.errors import UsageError
from shipyard.store.models import ApiToken, GitTrigger

MAX_BODY = 5 * 1024 * 1024          # GitHub caps payloads at 25 MB, but a push of a few commits is a few kB
router = APIRouter(tags=["gitops"])
Reader = Annotated[ApiToken, Depends(require("read"))]


class HookDeploy(BaseModel):
    service: str
    env: str
    sha: str
    deployment_id: str | None = Field(description="The deployment queued (null: refused, see `refused`).")
    refused: str | None
    new: bool = Field(description="False when this sha was handled before (by the poller or another hook).")


class HookResult(BaseModel):
    deployments: list[HookDeploy]
    ignored: str | None = Field(description="Why nothing was deployed: a delete, a tag, another branch, ...")


_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": Problem} for status in (400, 401, 403, 404, 409, 413)}
_HEADERS = (("X-GitHub-Event", "GitHub: the event (push; others are ignored)"),
            ("X-GitHub-Delivery", "GitHub: the delivery id (a second delivery with it is refused)"),
            ("X-Hub-Signature-256", "GitHub: sha256=<hex HMAC-SHA256 of the body with the secret>"),
            ("X-Gitlab-Event", "GitLab: the event (Push Hook; others are ignored)"),
            ("X-Gitlab-Event-UUID", "GitLab: the delivery id (a second delivery with it is refused)"),
            ("X-Gitlab-Token", "GitLab: the secret token"))
# The body is read raw (the signature covers its exact bytes), so its schema and the headers are declared
# here rather than through parameters FastAPI would parse.
_OPENAPI: dict[str, object] = {
    "security": [],
    "parameters": [{"name": name, "in": "header", "required": False, "description": text,
                    "schema": {"type": "string"}} for name, text in _HEADERS],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
}


@router.post("/hooks/git", status_code=202, response_model=HookResult, summary="Push webhook (GitHub, GitLab)",
             responses={200: {"model": HookResult, "description": "Valid, but nothing new to deploy"}, **_ERRORS},
             openapi_extra=_OPENAPI)
async def git_hook(request: Request, response: Response) -> HookResult:
    gitops = request.app.state.settings.gitops
    if gitops is None:
        raise HTTPException(404, "GitOps is off here: no environment with auto_deploy: true deploys a repo's service")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        raise HTTPException(413, f"the body is larger than {MAX_BODY} bytes")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, f"the body is larger than {MAX_BODY} bytes")
    try:
        outcome = await gitops.receive(request.headers, body)
    except HookRefused as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except UsageError as exc:
        raise HTTPException(400, str(exc)) from None
    deployments = [HookDeploy(service=h.service, env=h.env, sha=h.sha, deployment_id=h.deployment_id,
                              refused=h.refused, new=h.new) for h in outcome.handled]
    response.status_code = 202 if any(h.new for h in outcome.handled) else 200
    return HookResult(deployments=deployments, ignored=outcome.ignored)


@router.get("/gitops/triggers", response_model=list[GitTriggerOut], summary="GitOps triggers, newest first",
            responses={401: {"model": Problem}, 403: {"model": Problem}})
def list_triggers(request: Request, token: Reader, env: str | None = None, service: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[GitTriggerOut]:
    stmt = select(GitTrigger).order_by(GitTrigger.id.desc()).limit(limit)
    stmt = env_filter(stmt, token, GitTrigger.env, env)
    if service is not None:
        stmt = stmt.where(GitTrigger.service == service)
    with store_of(request).session(readonly=True) as s:
        return [GitTriggerOut.model_validate(t) for t in s.scalars(stmt)]
