"""/metrics (Prometheus text format), behind a `read` token like everything but /healthz (one not bound to
environments: the figures cover all of them). Prometheus sends it with `authorization: {credentials: ...}`
in its scrape config."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shipyard.api.auth import require
from shipyard.api.schemas import Problem
from shipyard.store import tokens as tq
from shipyard.store.models import ApiToken

router = APIRouter(tags=["metrics"], responses={401: {"model": Problem}, 403: {"model": Problem}})


@router.get("/metrics", summary="Deployments, durations, queues and the outbox for Prometheus",
            response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(request: Request, token: Annotated[ApiToken, Depends(require("read"))]) -> Response:
    if tq.envs_of(token) is not None:
        raise HTTPException(403, f"the token {token.name!r} is bound to environments; /metrics covers all of "
                                 "them: scrape with a token made without --env")
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
