"""Which daemon runs which background work: the leases in the store, and this daemon's own view."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from shipyard.api.auth import require, store_of
from shipyard.api.schemas import Problem
from shipyard.store import daemon_leases as dl
from shipyard.store.models import ApiToken
from shipyard.store.owner import owner_is_dead

router = APIRouter(tags=["daemons"], responses={401: {"model": Problem}, 403: {"model": Problem}})


class LeaseOut(BaseModel):
    work: str
    owner: str
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    owner_dead: bool


class DaemonsOut(BaseModel):
    this: str | None
    running_here: list[str]
    leases: list[LeaseOut]


@router.get("/daemons", response_model=DaemonsOut, summary="Who runs which background work")
def daemons(request: Request, token: Annotated[ApiToken, Depends(require("read"))]) -> DaemonsOut:
    with store_of(request).session(readonly=True) as s:
        leases = [LeaseOut(work=r.work, owner=r.owner, acquired_at=r.acquired_at, heartbeat_at=r.heartbeat_at,
                           expires_at=r.expires_at, owner_dead=owner_is_dead(r.owner)) for r in dl.holders(s)]
    daemon = request.app.state.settings.daemon
    status = daemon.status() if daemon is not None else {"owner": None, "running": []}
    return DaemonsOut(this=status["owner"], running_here=status["running"], leases=leases)
