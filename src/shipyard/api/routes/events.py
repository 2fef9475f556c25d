"""Events: a page of them, and live streams (server-sent events) of everything or of one deployment.

A stream polls the store (every POLL seconds, a short read session) for events after the last one sent, so
it works the same whoever appends them: this process, a CLI deploy on another machine, another daemon. Each
event goes out as `id: <n>`, `event: <kind>`, `data: <json>`; a client that reconnects with `Last-Event-ID`
(or `after=`) resumes after it, missing nothing. A comment line every KEEPALIVE seconds keeps proxies from
closing an idle stream. A deployment's stream ends with `event: end` once the deployment is finished and
its last event has been sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Select, select

from shipyard.api.auth import check_env, env_filter, require, store_of
from shipyard.api.schemas import EventOut, Problem
from shipyard.domain.deployment import DeployState
from shipyard.store import Store
from shipyard.store.models import ApiToken, Deployment, Event

router = APIRouter(tags=["events"], responses={401: {"model": Problem}, 403: {"model": Problem}})
Reader = Annotated[ApiToken, Depends(require("read"))]
POLL = 0.5
KEEPALIVE = 15.0
BATCH = 200
MAX_ID = 2**63 - 1       # a BIGINT; a larger `after` is a 422, not a driver overflow


def _query(token: ApiToken, *, service: str | None, env: str | None, kind: str | None,
           deployment_id: str | None = None) -> Select[Any]:
    stmt = select(Event).order_by(Event.id)
    stmt = env_filter(stmt, token, Event.env, env)
    if service is not None:
        stmt = stmt.where(Event.service == service)
    if kind is not None:
        stmt = (stmt.where(Event.kind.startswith(kind[:-1], autoescape=True)) if kind.endswith(".*")
                else stmt.where(Event.kind == kind))
    if deployment_id is not None:
        stmt = stmt.where(Event.deployment_id == deployment_id)
    return stmt


def _resume_point(after: int | None, last_event_id: str | None) -> int:
    if last_event_id is not None:
        if not last_event_id.strip().isdigit() or int(last_event_id) > MAX_ID:
            raise HTTPException(400, "Last-Event-ID: an event id (a number) this API sent")
        return int(last_event_id)
    return after or 0


@router.get("/events", response_model=list[EventOut], summary="Events after an id, oldest first")
def list_events(request: Request, token: Reader, service: str | None = None, env: str | None = None,
                kind: Annotated[str | None, Query(description="A kind, or a family like `rollback.*`.")] = None,
                after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[EventOut]:
    stmt = _query(token, service=service, env=env, kind=kind).where(Event.id > after).limit(limit)
    with store_of(request).session(readonly=True) as s:
        return [EventOut.model_validate(e) for e in s.scalars(stmt)]


def _sse(event: Event) -> str:
    data = EventOut.model_validate(event).model_dump(mode="json")
    data.update(service=event.service, env=event.env, deployment_id=event.deployment_id)
    return f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _follow(request: Request, store: Store, stmt: Select[Any], after: int,
                  deployment_id: str | None = None) -> AsyncIterator[str]:
    def read(last: int) -> tuple[list[Event], bool]:
        with store.session(readonly=True) as s:
            # The state first: when it says finished, the events read after it include the last ones.
            done = False
            if deployment_id is not None:
                row = s.get(Deployment, deployment_id)
                done = row is None or DeployState(row.state).terminal
            events = list(s.scalars(stmt.where(Event.id > last).limit(BATCH)))
        return events, done and len(events) < BATCH

    last, quiet_since, finished = after, time.monotonic(), False
    yield "retry: 2000\n\n"
    while not await request.is_disconnected():
        events, done = await asyncio.to_thread(read, last)
        for event in events:
            last = event.id
            yield _sse(event)
        if events:
            quiet_since = time.monotonic()
        if done and finished:
            # Finished two reads ago, and nothing came after one more poll: every event of it is sent.
            yield f"event: end\ndata: {json.dumps({'deployment_id': deployment_id})}\n\n"
            return
        finished = done
        if len(events) < BATCH:
            if time.monotonic() - quiet_since >= KEEPALIVE:
                quiet_since = time.monotonic()
                yield ": keepalive\n\n"
            await asyncio.sleep(POLL)


def _stream(body: AsyncIterator[Any]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/events/stream", summary="Every event as it happens (server-sent events)",
            response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
def stream_events(request: Request, token: Reader, service: str | None = None, env: str | None = None,
                  kind: str | None = None, after: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
                  last_event_id: Annotated[str | None, Header()] = None) -> StreamingResponse:
    stmt = _query(token, service=service, env=env, kind=kind)
    start = _resume_point(after, last_event_id)
    if after is None and last_event_id is None:       # a new follower starts at now, not at the beginning
        with store_of(request).session(readonly=True) as s:
            newest = s.scalars(select(Event.id).order_by(Event.id.desc()).limit(1)).first()
        start = newest or 0
    return _stream(_follow(request, store_of(request), stmt, start))


@router.get("/deployments/{deployment_id}/events/stream", summary="One deployment's events, from its start",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}, 404: {"model": Problem}})
def stream_deployment(request: Request, deployment_id: str, token: Reader,
                      last_event_id: Annotated[str | None, Header()] = None) -> StreamingResponse:
    with store_of(request).session(readonly=True) as s:
        row = s.get(Deployment, deployment_id)
        if row is None:
            raise HTTPException(404, f"no deployment {deployment_id!r}")
        check_env(token, row.env)
    stmt = _query(token, service=None, env=None, kind=None, deployment_id=deployment_id)
    return _stream(_follow(request, store_of(request), stmt, _resume_point(None, last_event_id), deployment_id))
