"""The dashboard's pages, its live stream and its forms; mounted at `/` by api/app.py.

Every page needs a login (else a redirect to /login); the JSON API under /api keeps its bearer tokens and is
untouched. A page's data comes from views.py; forms post to /actions/* and are checked by `_posted` (the
session's CSRF token and the Origin) before anything happens. A read token sees no write buttons, and its
POSTs are refused (403) all the same. The live parts follow `/live/events`, the API's event stream (the same
follower, `events._follow`) authenticated by the session cookie, because a browser's EventSource cannot send
an Authorization header; the script then swaps in the server-rendered fragments (/fragments/*).
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from shipyard.api.auth import store_of
from shipyard.api.routes import deployments as dep_routes
from shipyard.api.routes import promotions as promo_routes
from shipyard.api.routes.approvals import ApprovalSettings
from shipyard.domain.deployment import DeployState
from shipyard.engine import approvals as gate
from shipyard.errors import ShipyardError
from shipyard.reports import Period, dora, parse_period, render_markdown, report
from shipyard.store import deployments as dq
from shipyard.store import tokens as tq
from shipyard.store.models import ApiToken
from shipyard.web import charts, live, session, views
from shipyard.web.markdown import render as render_md

HERE = Path(__file__).resolve().parent
STATIC = {name: (HERE / "static" / name).read_bytes() for name in ("dashboard.css", "live.js")}
TYPES = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8"}
LOGIN_NONCE = "shipyard_login"
MAX_FORM = 16 * 1024
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

router = APIRouter(include_in_schema=False)
templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                        trim_blocks=True, lstrip_blocks=True)
templates.globals.update(charts=charts, short=lambda rev: (rev or "")[:8], check_phases=views.CHECK_PHASES)
templates.filters["ago"] = lambda when: _ago(when)
templates.filters["when"] = lambda when: when.strftime("%Y-%m-%d %H:%M:%S UTC") if when else "-"


def _ago(when: datetime | None) -> str:
    if when is None:
        return "-"
    secs = (datetime.now(UTC) - when).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs / size:.0f}{unit} ago"
    return f"{max(secs, 0):.0f}s ago"


def _headers() -> dict[str, str]:
    return {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store", "X-Frame-Options": "DENY"}


def page(name: str, request: Request, token: ApiToken | None, status: int = 200, **ctx: Any) -> HTMLResponse:
    api_token = request.cookies.get(session.COOKIE)
    html = templates.get_template(name).render(
        request=request, token=token, project=request.app.state.settings.project,
        csrf=session.csrf_token(api_token) if token is not None and api_token else "",
        can_deploy=token is not None and tq.allows(token, "deploy"), now=datetime.now(UTC), **ctx)
    return HTMLResponse(html, status_code=status, headers=_headers())


def logged_in(request: Request) -> ApiToken | None:
    """The session's token, checked as the API checks a bearer token (revoked: logged out)."""
    text = request.cookies.get(session.COOKIE)
    if not text or len(text) > session.MAX_TOKEN:
        return None
    store = store_of(request)
    with store.session(readonly=True) as s:
        row = tq.verify_token(s, text)
    if row is not None and tq.touch_due(row):
        with store.session() as s:
            tq.touch(s, row.id)
    return row


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def own_host(request: Request) -> str:
    return request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"


async def form_of(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM:
        return {}
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in fields.items()}


async def _posted(request: Request) -> tuple[ApiToken | None, dict[str, str], Response | None]:
    """A POST's token and form, or the answer refusing it: 403 without the right Origin or CSRF token
    (checked before the form says anything), 303 to /login without a session."""
    form = await form_of(request)
    if not session.origin_ok(own_host(request), request.headers.get("origin"), request.headers.get("referer")):
        return None, form, page("error.html", request, None, 403, message="refused: this form did not come from "
                                "this server's pages (Origin)")
    token = logged_in(request)
    if token is None:
        return None, form, to_login(request)
    if not session.csrf_ok(request.cookies.get(session.COOKIE), form.get(session.CSRF_FIELD)):
        return None, form, page("error.html", request, token, 403, message="refused: the form's CSRF token is "
                                "missing or wrong (reload the page and try again)")
    return token, form, None


# ---- static assets ---------------------------------------------------------------------------------------

@router.get("/static/{name}")
def static(name: str) -> Response:
    body = STATIC.get(name)
    if body is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(body, media_type=TYPES[name.rpartition(".")[2]],
                    headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})


# ---- login -----------------------------------------------------------------------------------------------

@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    nonce = request.cookies.get(LOGIN_NONCE) or secrets.token_urlsafe(24)
    res = page("login.html", request, None, next=session.safe_next(next), nonce=nonce)
    res.set_cookie(LOGIN_NONCE, nonce, max_age=3600, **session.cookie_attributes(  # type: ignore[arg-type]
        secure=request.url.scheme == "https"))
    return res


@router.post("/login")
async def login(request: Request) -> Response:
    form = await form_of(request)
    target = session.safe_next(form.get("next"))
    nonce = request.cookies.get(LOGIN_NONCE)
    if (not session.origin_ok(own_host(request), request.headers.get("origin"), request.headers.get("referer"))
            or not nonce or not secrets.compare_digest(nonce, form.get(session.CSRF_FIELD, ""))):
        return page("error.html", request, None, 403, message="refused: the login form did not come from this "
                    "server's login page (reload it and try again)")
    text = form.get("token", "").strip()
    row = None
    if text and len(text) <= session.MAX_TOKEN:
        with store_of(request).session(readonly=True) as s:
            row = tq.verify_token(s, text)
    if row is None or not tq.allows(row, "read"):
        return page("login.html", request, None, 401, next=target, nonce=nonce,
                    error="That token is not valid (unknown, revoked or mistyped), or it lacks the read scope.")
    res = RedirectResponse(target, status_code=303)
    res.set_cookie(session.COOKIE, text, **session.cookie_attributes(  # type: ignore[arg-type]
        secure=request.url.scheme == "https"))
    res.delete_cookie(LOGIN_NONCE, path="/")
    return res


@router.post("/logout")
async def logout(request: Request) -> Response:
    _, _, refused = await _posted(request)
    if refused is not None and refused.status_code == 403:
        return refused
    res = RedirectResponse("/login", status_code=303)
    res.delete_cookie(session.COOKIE, path="/", httponly=True, samesite="strict")
    return res


# ---- pages -----------------------------------------------------------------------------------------------

async def _overview_data(request: Request, token: ApiToken) -> dict[str, Any]:
    runner = request.app.state.settings.runner
    if runner is None:
        return {"envs": [], "services": [], "cells": {}, "agent": False, "extras": None, "approvals": [],
                "note": "this server runs without an engine: no status to show"}
    envs = views.allowed_envs(token, runner.environments())
    status: dict[str, Any] = await runner.status(None, envs) if envs else {"status": [], "agent": True}
    rows: list[dict[str, Any]] = status["status"]
    services, cells = views.grid(rows, envs)
    store = store_of(request)
    extras = views.overview_extras(store, rows, envs)
    waiting = await asyncio.to_thread(views.awaiting_approval, store, envs, token)
    return {"envs": envs, "services": services, "cells": cells, "agent": status["agent"], "extras": extras,
            "approvals": waiting, "note": None}


@router.get("/")
async def overview(request: Request) -> Response:
    token = logged_in(request)
    if token is None:
        return to_login(request)
    return page("overview.html", request, token, **await _overview_data(request, token))


@router.get("/fragments/overview")
async def overview_fragment(request: Request) -> Response:
    """The overview's live part (grid, deploys in progress, queue, recent), for the script to swap in."""
    token = logged_in(request)
    if token is None:
        return Response(status_code=401)
    return page("_overview_live.html", request, token, **await _overview_data(request, token))


def _deployment(request: Request, token: ApiToken, deployment_id: str) -> dict[str, Any] | None:
    with store_of(request).session(readonly=True) as s:
        row = dq.get_deployment(s, deployment_id)
        if row is None or not tq.allows(token, "read", row.env):
            return None
        data = views.deployment_page(s, row)
    approval = (views.approval_of(store_of(request), row, data["commit"], token)
                if row.state == DeployState.AWAITING_APPROVAL else None)
    # The checklist comes from the API's own answer for this deployment (the checklists work adds the field
    # there): whatever GET /api/v1/deployments/{id} says is what the page shows, and no field, no panel.
    detail = dep_routes.deployment_detail(request, deployment_id, token).model_dump()
    return {**data, "checklist": views.checklist_of(detail), "approval": approval}


@router.get("/deployments/{deployment_id}")
def deployment(request: Request, deployment_id: str) -> Response:
    token = logged_in(request)
    if token is None:
        return to_login(request)
    data = _deployment(request, token, deployment_id)
    if data is None:
        return page("error.html", request, token, 404, message=f"no deployment {deployment_id!r} (or not one "
                    "this token may read)")
    return page("deployment.html", request, token, **data)


@router.get("/deployments/{deployment_id}/logs")
def deployment_logs(deployment_id: str) -> Response:
    """The notifications' "logs" link (notify/channels/slack.py): the deployment's hook and command output."""
    return RedirectResponse(f"/deployments/{quote(deployment_id)}#output-h", status_code=303)


@router.get("/fragments/deployments/{deployment_id}")
def deployment_fragment(request: Request, deployment_id: str) -> Response:
    token = logged_in(request)
    if token is None:
        return Response(status_code=401)
    data = _deployment(request, token, deployment_id)
    if data is None:
        return Response(status_code=404)
    return page("_deployment_live.html", request, token, **data)


@router.get("/history")
def history(request: Request, service: str | None = None, env: str | None = None, state: str | None = None,
            cursor: str | None = None) -> Response:
    token = logged_in(request)
    if token is None:
        return to_login(request)
    service, env, state = service or None, env or None, state or None
    states = [s.value for s in DeployState]
    if state is not None and state not in states:
        return page("error.html", request, token, 400, message=f"unknown state {state!r}")
    if env is not None and not tq.allows(token, "read", env):
        return page("error.html", request, token, 403, message=f"the token {token.name!r} may not read {env!r}")
    try:
        found = dep_routes.deployments_page(request, token, service=service, env=env,
                                            state=[DeployState(state)] if state else None, actor=None, since=None,
                                            until=None, limit=50, cursor=cursor)
    except HTTPException as exc:        # a cursor this server did not give out: say so on the page
        return page("error.html", request, token, exc.status_code, message=str(exc.detail))
    runner = request.app.state.settings.runner
    envs = views.allowed_envs(token, runner.environments()) if runner is not None else []
    services = sorted(runner.project.config.services) if runner is not None and hasattr(runner, "project") else []
    return page("history.html", request, token, page_=found, filters={"service": service, "env": env, "state": state},
                states=states, envs=envs, services=services)


@router.get("/promotions")
def promotions(request: Request, env: str | None = None) -> Response:
    token = logged_in(request)
    if token is None:
        return to_login(request)
    env = env or None
    if env is not None and not tq.allows(token, "read", env):
        return page("error.html", request, token, 403, message=f"the token {token.name!r} may not read {env!r}")
    rows = promo_routes.list_promotions(request, token, env=env, limit=100)
    return page("promotions.html", request, token, rows=rows, env=env)


TREND_WEEKS = 6


def _report_env(token: ApiToken, env: str | None) -> str | None:
    bound = tq.envs_of(token)
    if bound is not None and (env is None or env not in bound):
        return sorted(bound)[0]
    return env


@router.get("/dora")
async def dora_page(request: Request, env: str | None = None, period: str = "30d") -> Response:
    token = logged_in(request)
    if token is None:
        return to_login(request)
    env = _report_env(token, env or None)
    try:
        window = parse_period(period)
    except ShipyardError as exc:
        return page("error.html", request, token, 400, message=str(exc))
    store = store_of(request)
    current = await dora(store, window, None, env)
    # The trend: the same figures week by week (TREND_WEEKS queries, each over one week's index range).
    now = datetime.now(UTC)
    weeks = []
    for back in range(TREND_WEEKS - 1, -1, -1):
        until = now - timedelta(days=7 * back)
        w = Period(until - timedelta(days=7), until)
        weeks.append((w, await dora(store, w, None, env)))
    trends: dict[tuple[str, str], dict[str, list[float | None]]] = {}
    labels = [w.since.strftime("%m-%d") for w, _ in weeks]
    for i, (_, d) in enumerate(weeks):
        for g in d["by_service_env"]:
            t = trends.setdefault((g["service"], g["env"]), {"deploys": [None] * len(weeks),
                                                             "cfr": [None] * len(weeks)})
            t["deploys"][i] = g["deployment_frequency"]["deploys"]
            rate = g["change_failure_rate"]["rate"]
            t["cfr"][i] = None if rate is None else round(100 * rate, 1)
    runner = request.app.state.settings.runner
    envs = views.allowed_envs(token, runner.environments()) if runner is not None else []
    return page("dora.html", request, token, dora=current, trends=trends, labels=labels, env=env, period=period,
                envs=envs)


@router.get("/report")
async def report_page(request: Request, env: str | None = None, period: str = "30d") -> Response:
    token = logged_in(request)
    if token is None:
        return to_login(request)
    env = _report_env(token, env or None)
    try:
        window = parse_period(period)
    except ShipyardError as exc:
        return page("error.html", request, token, 400, message=str(exc))
    data = await report(store_of(request), window, None, env)
    runner = request.app.state.settings.runner
    envs = views.allowed_envs(token, runner.environments()) if runner is not None else []
    return page("report.html", request, token, html=render_md(render_markdown(data)), env=env, period=period,
                envs=envs)


# ---- live ------------------------------------------------------------------------------------------------

@router.get("/live/events")
def live_events(request: Request, deployment: str | None = None) -> Response:
    """Changes of the overview (what the token may read) or of one deployment (live.py)."""
    token = logged_in(request)
    if token is None:
        return Response(status_code=401)
    store = store_of(request)
    if deployment is not None:
        with store.session(readonly=True) as s:
            row = dq.get_deployment(s, deployment)
            if row is None or not tq.allows(token, "read", row.env):
                return Response(status_code=404)
        return live.stream(request, store, lambda s: live.deployment_signature(s, deployment), ends=True,
                           still=lambda: logged_in(request) is not None)
    runner = request.app.state.settings.runner
    envs = views.allowed_envs(token, runner.environments()) if runner is not None else []
    return live.stream(request, store, live.OverviewSignature(envs), ends=False,
                       still=lambda: logged_in(request) is not None)


# ---- actions (deploy scope) ------------------------------------------------------------------------------

async def _act(request: Request, action: str) -> Response:
    token, form, refused = await _posted(request)
    if refused is not None or token is None:
        return refused or to_login(request)
    runner = request.app.state.settings.runner
    service, env = form.get("service", ""), form.get("env", "")
    if action == "cancel":
        with store_of(request).session(readonly=True) as s:
            row = dq.get_deployment(s, form.get("deployment", ""))
        env = row.env if row is not None else ""
    if not env or not tq.allows(token, "deploy", env):
        return page("error.html", request, token, 403, message=f"the token {token.name!r} may not deploy to "
                    f"{env or 'that environment'!r}")
    if runner is None:
        return page("error.html", request, token, 503, message="this server was started without an engine")
    try:
        if action == "deploy":
            dep_id = await runner.deploy(service, env, rev=form.get("rev") or None, strategy=None, actor=token.name)
        elif action == "rollback":
            dep_id = await runner.rollback(service, env, actor=token.name)
        else:
            dep_id = form["deployment"]
            await runner.cancel(dep_id, actor=token.name, reason=form.get("reason", "")[:500])
    except ShipyardError as exc:
        return page("error.html", request, token, 409, message=str(exc))
    return RedirectResponse(f"/deployments/{quote(dep_id)}", status_code=303)


@router.post("/actions/deploy")
async def act_deploy(request: Request) -> Response:
    return await _act(request, "deploy")


@router.post("/actions/rollback")
async def act_rollback(request: Request) -> Response:
    return await _act(request, "rollback")


@router.post("/actions/cancel")
async def act_cancel(request: Request) -> Response:
    return await _act(request, "cancel")


# ---- approvals (approve scope) ---------------------------------------------------------------------------

@router.post("/actions/approve")
async def act_approve(request: Request) -> Response:
    return await _decide(request, "approve")


@router.post("/actions/reject")
async def act_reject(request: Request) -> Response:
    return await _decide(request, "reject")


async def _decide(request: Request, decision: str) -> Response:
    """engine.approvals.decide as the session token's name, exactly as POST /api/v1/deployments/{id}/approvals
    does (the gate's rules are there, not here). A reject needs a reason: it cancels the deployment."""
    token, form, refused = await _posted(request)
    if refused is not None or token is None:
        return refused or to_login(request)
    dep_id = form.get("deployment", "")
    with store_of(request).session(readonly=True) as s:
        row = dq.get_deployment(s, dep_id)
    if row is None or not tq.allows(token, "read", row.env):
        return page("error.html", request, token, 404, message=f"no deployment {dep_id!r}")
    if not tq.allows(token, "approve", row.env):
        return page("error.html", request, token, 403, message=f"the token {token.name!r} may not approve in "
                    f"{row.env!r} (it needs the approve scope)")
    comment = form.get("comment", "").strip()
    if decision == "reject" and not comment:
        return page("error.html", request, token, 400, message="a reject needs a reason (it cancels the "
                    "deployment, and the reason is on its record)")
    found = getattr(request.app.state.settings, "approvals", None)
    notifications = found.notifications if isinstance(found, ApprovalSettings) else None
    try:
        await asyncio.to_thread(gate.decide, store_of(request), dep_id, approver=token.name, decision=decision,
                                comment=comment, via="dashboard", notifications=notifications)
    except ShipyardError as exc:
        return page("error.html", request, token, 409, message=str(exc))
    return RedirectResponse("/" if decision == "approve" else f"/deployments/{quote(dep_id)}", status_code=303)
