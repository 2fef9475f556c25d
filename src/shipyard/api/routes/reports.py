"""Stats, DORA and reports over a period (shipyard.reports; definitions in docs/dora.md): the same figures
as `shipyard report`. A token bound to environments must name one of them (`env=`): its figures never mix
in another environment's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse

from shipyard.api.auth import check_env, require, store_of
from shipyard.api.schemas import Problem
from shipyard.reports import Period, dora, parse_period, render_markdown, report, stats
from shipyard.store import tokens as tq
from shipyard.store.models import ApiToken

router = APIRouter(tags=["reports"], responses={400: {"model": Problem}, 401: {"model": Problem},
                                                403: {"model": Problem}})
Reader = Annotated[ApiToken, Depends(require("read"))]
PeriodQ = Annotated[str, Query(description="How far back from now: 12h, 7d, 30d, 2w (ignored with `since`).",
                               max_length=16)]
SinceQ = Annotated[datetime | None, Query(description="Start (ISO 8601 with an offset); overrides `period`.")]
UntilQ = Annotated[datetime | None, Query(description="End (ISO 8601 with an offset); default now.")]


def _window(period: str, since: datetime | None, until: datetime | None) -> Period:
    if since is None:
        if until is not None:
            raise HTTPException(400, "until needs since (or give period alone)")
        return parse_period(period)
    return Period(since, until or datetime.now(UTC))


def _scope(token: ApiToken, env: str | None) -> None:
    if env is not None:
        check_env(token, env)
    elif tq.envs_of(token) is not None:
        raise HTTPException(403, f"the token {token.name!r} is bound to environments: give env=")


def _commits(request: Request, service: str | None, env: str | None) -> Any:
    factory = request.app.state.settings.commits
    return factory(service, env) if factory is not None else None


@router.get("/stats", summary="Totals, success rate, durations and breakdowns for a period")
async def get_stats(request: Request, token: Reader, period: PeriodQ = "30d", since: SinceQ = None,
                    until: UntilQ = None, service: str | None = None, env: str | None = None) -> dict[str, Any]:
    _scope(token, env)
    result: dict[str, Any] = await stats(store_of(request), _window(period, since, until), service, env)
    return result


@router.get("/dora", summary="The four DORA keys per service and env, with their bands")
async def get_dora(request: Request, token: Reader, period: PeriodQ = "90d", since: SinceQ = None,
                   until: UntilQ = None, service: str | None = None, env: str | None = None) -> dict[str, Any]:
    _scope(token, env)
    result: dict[str, Any] = await dora(store_of(request), _window(period, since, until), service, env,
                                        commits=_commits(request, service, env))
    return result


@router.get("/reports", summary="Stats, DORA and the previous period; or the Markdown summary (format=md)",
            responses={200: {"content": {"application/json": {}, "text/markdown": {}}}})
async def get_report(request: Request, token: Reader, period: PeriodQ = "30d", since: SinceQ = None,
                     until: UntilQ = None, service: str | None = None, env: str | None = None,
                     format: Literal["json", "md"] = "json") -> Any:
    _scope(token, env)
    data = await report(store_of(request), _window(period, since, until), service, env,
                        commits=_commits(request, service, env))
    if format == "md":
        return PlainTextResponse(render_markdown(data), media_type="text/markdown; charset=utf-8")
    return data
