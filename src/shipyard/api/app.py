"""`create_app(settings)`: the API's FastAPI application, its error answers and its routes.

Every error is `{"error": "<one line>"}` with its status: 400 bad input, 401 no or a bad token, 403 outside
the token's scopes or environments, 404 unknown (NotFoundError), 409 conflict, 422 a request the schema refuses, 503 the
state database is unreachable. An unexpected exception is a 500 with no detail (logged, never shown).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shipyard.errors import NotFoundError, ShipyardError, StoreError, UsageError
from shipyard.store import Store

log = logging.getLogger("shipyard.api")
API_PREFIX = "/api/v1"


@dataclass(frozen=True)
class ApiSettings:
    store: Store
    project: str = "shipyard"
    runner: Any = None          # routes.actions.Runner: None serves reads only (writes answer 503)
    daemon: Any = None          # shipyard.daemon.Daemon: what this process runs in the background
    commits: Any = None         # (service, env) -> reports.CommitReader, for DORA's lead time (None: left out)
    gitops: Any = None          # shipyard.daemon.gitops_watch.GitOps: the push webhooks (None: answered 404)
    approvals: Any = None       # routes.approvals.ApprovalSettings: routed decisions, the links' secret


def _problem(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_line(exc: RequestValidationError) -> str:
    first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
    return f"{where or 'request'}: {first.get('msg', 'invalid')}"


def create_app(settings: ApiSettings) -> FastAPI:
    from shipyard.api.metrics import registry_for
    from shipyard.api.routes import (
        actions,
        approvals,
        checklists,
        daemons,
        deployments,
        events,
        health,
        hooks,
        metrics,
        promotions,
        releases,
        reports,
        status,
    )
    from shipyard.web import routes as dashboard

    app = FastAPI(title=f"shipyard API ({settings.project})", version="1", openapi_url="/api/openapi.json",
                  docs_url="/api/docs", redoc_url=None)
    app.state.store = settings.store
    app.state.settings = settings
    app.state.metrics = registry_for(settings.store)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _problem(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _problem(422, _validation_line(exc))

    @app.exception_handler(ShipyardError)
    async def shipyard_error(request: Request, exc: ShipyardError) -> JSONResponse:
        if isinstance(exc, StoreError):
            return _problem(503, str(exc))
        if isinstance(exc, NotFoundError):
            return _problem(404, str(exc))
        return _problem(400 if isinstance(exc, UsageError) else 409, str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return _problem(500, "internal error (logged by the server)")

    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(deployments.router, prefix=API_PREFIX)
    app.include_router(actions.router, prefix=API_PREFIX)
    app.include_router(status.router, prefix=API_PREFIX)
    app.include_router(promotions.router, prefix=API_PREFIX)
    app.include_router(releases.router, prefix=API_PREFIX)
    app.include_router(events.router, prefix=API_PREFIX)
    app.include_router(daemons.router, prefix=API_PREFIX)
    app.include_router(reports.router, prefix=API_PREFIX)
    app.include_router(hooks.router, prefix=API_PREFIX)
    app.include_router(approvals.router)        # its paths are whole: the API's and the links' /approve pages
    app.include_router(dashboard.router)          # the dashboard's pages, at / (shipyard.web)
    app.include_router(checklists.router)
    return app
