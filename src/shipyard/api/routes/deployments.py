"""Deployments: the history (filters, keyset pagination newest first) and one deployment in full."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import and_, or_, select
from starlette.concurrency import run_in_threadpool

from shipyard.api.auth import check_env, env_filter, require, store_of
from shipyard.api.schemas import (
    ChecklistItemOut,
    DeploymentDetail,
    DeploymentOut,
    DeploymentPage,
    EventOut,
    Problem,
    StepOut,
)
from shipyard.domain.deployment import DeployState
from shipyard.store import checklists as cq
from shipyard.store import events as eq
from shipyard.store import steps as sq
from shipyard.store.models import ApiToken, Deployment

router = APIRouter(tags=["deployments"], responses={401: {"model": Problem}, 403: {"model": Problem}})
Reader = Annotated[ApiToken, Depends(require("read"))]


def encode_cursor(row: Deployment) -> str:
    raw = json.dumps([row.created_at.isoformat(), row.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, str]:
    try:
        at, ident = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        when = datetime.fromisoformat(at)
        if when.tzinfo is None or not isinstance(ident, str):
            raise ValueError("not a cursor")
    except (ValueError, TypeError, binascii.Error):
        raise HTTPException(400, "cursor: not one this API gave out (pass next_cursor back unchanged)") from None
    return when, ident


# The two endpoints with the tightest latency goals are async, each running its sync body in one thread
# hop: for a sync endpoint FastAPI takes a second hop just to validate the answer. The bodies are also what
# the dashboard's pages call.

@router.get("/deployments", response_model=DeploymentPage, summary="Deployments, newest first",
            responses={400: {"model": Problem}})
async def list_deployments(
    request: Request, token: Reader,
    service: str | None = None, env: str | None = None,
    state: Annotated[list[DeployState] | None, Query(description="One or several states.")] = None,
    actor: str | None = None,
    since: Annotated[datetime | None, Query(description="Created at or after (ISO 8601 with an offset).")] = None,
    until: Annotated[datetime | None, Query(description="Created before (ISO 8601 with an offset).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> DeploymentPage:
    return await run_in_threadpool(deployments_page, request, token, service=service, env=env, state=state,
                                   actor=actor, since=since, until=until, limit=limit, cursor=cursor)


def deployments_page(
    request: Request, token: ApiToken, *, service: str | None, env: str | None, state: list[DeployState] | None,
    actor: str | None, since: datetime | None, until: datetime | None, limit: int, cursor: str | None,
) -> DeploymentPage:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise HTTPException(400, f"{name}: give a time with its offset (e.g. 2026-12-01T00:00:00Z)")
    stmt = select(Deployment).order_by(Deployment.created_at.desc(), Deployment.id.desc())
    stmt = env_filter(stmt, token, Deployment.env, env)
    if service is not None:
        stmt = stmt.where(Deployment.service == service)
    if state:
        stmt = stmt.where(Deployment.state.in_([s.value for s in state]))
    if actor is not None:
        stmt = stmt.where(Deployment.actor == actor)
    if since is not None:
        stmt = stmt.where(Deployment.created_at >= since)
    if until is not None:
        stmt = stmt.where(Deployment.created_at < until)
    if cursor is not None:
        at, ident = decode_cursor(cursor)
        stmt = stmt.where(or_(Deployment.created_at < at, and_(Deployment.created_at == at, Deployment.id < ident)))
    with store_of(request).session(readonly=True) as s:
        rows = list(s.scalars(stmt.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return DeploymentPage(items=[DeploymentOut.model_validate(r) for r in rows],
                          next_cursor=encode_cursor(rows[-1]) if more and rows else None)


@router.get("/deployments/{deployment_id}", response_model=DeploymentDetail,
            summary="One deployment with its steps (hook output included) and events",
            responses={404: {"model": Problem}})
async def get_deployment(request: Request, deployment_id: str, token: Reader) -> DeploymentDetail:
    return await run_in_threadpool(deployment_detail, request, deployment_id, token)


def deployment_detail(request: Request, deployment_id: str, token: ApiToken) -> DeploymentDetail:
    with store_of(request).session(readonly=True) as s:
        row = s.get(Deployment, deployment_id)
        if row is None:
            raise HTTPException(404, f"no deployment {deployment_id!r}")
        check_env(token, row.env)
        steps = [StepOut.model_validate(x) for x in sq.list_steps(s, deployment_id)]
        checklist = [ChecklistItemOut(**x) for x in cq.view(s, deployment_id, row.state)]
        events = [EventOut.model_validate(x) for x in eq.list_events(s, deployment_id=deployment_id, limit=None,
                                                                         newest_first=False)]
    return DeploymentDetail(**DeploymentOut.model_validate(row).model_dump(), steps=steps, events=events,
                            checklist=checklist)
