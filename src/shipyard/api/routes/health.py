"""/healthz: the one endpoint without a token (a load balancer's or a supervisor's probe)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text

from shipyard.api.auth import store_of

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness and database reachability")
def healthz(request: Request) -> dict[str, str]:
    with store_of(request).session(readonly=True) as s:
        s.execute(text("SELECT 1"))
    return {"status": "ok"}
