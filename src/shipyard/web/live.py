"""The dashboard's live stream: server-sent events that say "this page changed", nothing more.

The engine writes a step's start and end to the store (not as events), so the API's event stream alone
does not show steps moving. This stream polls (every POLL seconds, one short read session of indexed
lookups) a signature of what the page shows: the newest event id, and per running deployment its state and
how many of its steps have started and ended; the queue's newest entry. When the signature moves, it sends
`data: <signature>`; the page then fetches its server-rendered fragment. A deployment's stream ends with
`event: end` once the deployment is finished and that was sent; any stream ends so once its session is no
longer valid (checked every RECHECK seconds: a revoked token's page stops following, goes to the login).
A comment every KEEPALIVE seconds keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shipyard.domain.deployment import DeployState
from shipyard.store import Store
from shipyard.store.models import Deployment, Event, Lease, QueueEntry, StepRecord

POLL = 0.5
KEEPALIVE = 15.0
RECHECK = 30.0          # how often an open stream checks its session is still valid (a revoked token)


def _steps(s: Session, ids: list[str]) -> list[tuple[str, int, int]]:
    if not ids:
        return []
    stmt = (select(StepRecord.deployment_id, func.count(), func.count(StepRecord.ended_at))
            .where(StepRecord.deployment_id.in_(ids)).group_by(StepRecord.deployment_id)
            .order_by(StepRecord.deployment_id))
    return [(d, int(n), int(e)) for d, n, e in s.execute(stmt)]


class OverviewSignature:
    """The overview's signature for one stream: what moved among the events of `envs`, the running
    deployments' steps and the queue. The events are looked at only above the id seen last (a range of the
    primary key), never over the whole table: at a million events `max(id) WHERE env IN ...` is a scan."""

    def __init__(self, envs: list[str]) -> None:
        self.envs = envs
        self.seen: int | None = None
        self.newest: int | None = None

    def __call__(self, s: Session) -> tuple[str, bool]:
        envs = self.envs
        top = s.scalar(select(func.max(Event.id)))
        if self.seen is None:
            self.seen = self.newest = top           # the page was drawn from this state
        elif top is not None and top > self.seen:
            mine = s.scalar(select(Event.id).where(Event.id > self.seen, Event.env.in_(envs))
                            .order_by(Event.id.desc()).limit(1)) if envs else None
            self.newest, self.seen = mine if mine is not None else self.newest, top
        leased = sorted(s.scalars(select(Lease.deployment_id).where(Lease.env.in_(envs)))) if envs else []
        queued = s.execute(select(func.count(), func.max(QueueEntry.id)).where(QueueEntry.env.in_(envs))).one()
        return f"{self.newest}|{_steps(s, leased)}|{tuple(queued)}", False


def deployment_signature(s: Session, deployment_id: str) -> tuple[str, bool]:
    row = s.get(Deployment, deployment_id)
    if row is None:
        return "gone", True
    newest = s.scalar(select(func.max(Event.id)).where(Event.deployment_id == deployment_id))
    return f"{row.state}|{newest}|{_steps(s, [deployment_id])}", DeployState(row.state).terminal


async def changes(request: Request, store: Store, signature: Callable[[Session], tuple[str, bool]],
                  *, ends: bool, still: Callable[[], bool] = lambda: True) -> AsyncIterator[str]:
    def read() -> tuple[str, bool]:
        with store.session(readonly=True) as s:
            return signature(s)

    last: str | None = None
    quiet_since = checked = time.monotonic()
    yield "retry: 2000\n\n"
    while not await request.is_disconnected():
        if time.monotonic() - checked >= RECHECK:
            checked = time.monotonic()
            if not await asyncio.to_thread(still):     # revoked or logged out: the page goes to the login
                yield "event: end\ndata: logged out\n\n"
                return
        sig, done = await asyncio.to_thread(read)
        if sig != last:          # the first one too: what changed between the page's render and now
            yield f"data: {sig}\n\n"
            last, quiet_since = sig, time.monotonic()
        if ends and done:
            yield "event: end\ndata: finished\n\n"
            return
        if time.monotonic() - quiet_since >= KEEPALIVE:
            quiet_since = time.monotonic()
            yield ": keepalive\n\n"
        await asyncio.sleep(POLL)


def stream(request: Request, store: Store, signature: Callable[[Session], tuple[str, bool]],
           *, ends: bool, still: Callable[[], bool] = lambda: True) -> Any:
    from fastapi.responses import StreamingResponse

    return StreamingResponse(changes(request, store, signature, ends=ends, still=still), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
