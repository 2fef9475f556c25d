"""Approvals: decide on a deployment awaiting approval, see its gate; and the signed links' confirm page.

POST /api/v1/deployments/{id}/approvals (scope `approve` on the deployment's env) records the decision of
the token's name: the token's name is the person (name tokens after their holders). GET lists the gate
and every decision (scope `read`); GET /api/v1/approvals lists what awaits approval (for the dashboard).

GET /approve/{token} (no API token: the signed link is the credential, notify/approval_links.py) only
shows a confirm page; its form POSTs back with the form token only that page carries, and only the POST
decides, once. Pages are never cached, framed or sent on as a referrer.
"""

from __future__ import annotations

import asyncio
import html
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from shipyard.api.auth import check_env, require, store_of
from shipyard.api.schemas import Problem
from shipyard.engine import approvals as gate
from shipyard.errors import ApprovalRefused, NotFoundError
from shipyard.notify import approval_links as links
from shipyard.store import approvals as aq
from shipyard.store import deployments as dq
from shipyard.store import tokens as tq
from shipyard.store.models import ApiToken

Approver = Annotated[ApiToken, Depends(require("approve"))]
Reader = Annotated[ApiToken, Depends(require("read"))]
router = APIRouter(tags=["approvals"])
MAX_FORM = 16 * 1024


@dataclass(frozen=True)
class ApprovalSettings:
    notifications: Any = None           # config.notifications: decisions' events are routed like the rest
    link_secret: str | None = None      # approval_links.secret, resolved; None: links answer 404


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"] = Field(default="approve", description="approve or reject (a reject "
                                                                                 "cancels the deployment).")
    comment: str = Field(default="", max_length=1000, description="Why (recorded with the decision).")


class Decided(BaseModel):
    id: str
    state: str = Field(description="The deployment's state after the decision (cancelled after a reject).")
    decision: str
    approver: str = Field(description="Who decided: the API token's name.")
    approved: list[str] = Field(description="The people whose approval counts so far, in order.")
    required: int
    reason: str | None


class DecisionOut(BaseModel):
    approver: str
    decision: str
    comment: str
    via: str = Field(description="cli, api or link")
    at: Any


class GateOut(BaseModel):
    id: str
    env: str
    state: str
    gate: dict[str, Any] | None = Field(description="The policy as requested (people, required, wait, timeout, "
                                                    "branches), who asked and when, the deadline, when the "
                                                    "approvals were complete, and the verdict now; null: no gate.")
    decisions: list[DecisionOut]


def _settings(request: Request) -> ApprovalSettings:
    found = getattr(request.app.state.settings, "approvals", None)
    return found if isinstance(found, ApprovalSettings) else ApprovalSettings()


def _env_of(request: Request, deployment_id: str) -> str:
    with store_of(request).session(readonly=True) as s:
        row = dq.get_deployment(s, deployment_id)
        if row is None:
            raise HTTPException(404, f"no deployment {deployment_id!r}")
        return row.env


@router.post("/api/v1/deployments/{deployment_id}/approvals", response_model=Decided,
             summary="Approve or reject a deployment awaiting approval",
             responses={s: {"model": Problem} for s in (400, 401, 403, 404, 409)})
async def post_approval(request: Request, deployment_id: str, token: Approver,
                        body: DecisionIn | None = None) -> Decided:
    """As the token's name. 409 when it cannot count: not an approver, the requester (self_approval off),
    the same person twice, or nothing awaiting approval."""
    check_env(token, _env_of(request, deployment_id))
    body = body or DecisionIn()
    done = await asyncio.to_thread(gate.decide, store_of(request), deployment_id, approver=token.name,
                                   decision=body.decision, comment=body.comment, via="api",
                                   notifications=_settings(request).notifications)
    return Decided(**done)


@router.get("/api/v1/deployments/{deployment_id}/approvals", response_model=GateOut,
            summary="A deployment's approval gate and decisions",
            responses={s: {"model": Problem} for s in (401, 403, 404)})
async def get_approvals(request: Request, deployment_id: str, token: Reader) -> GateOut:
    check_env(token, _env_of(request, deployment_id))
    return GateOut(**await asyncio.to_thread(gate.status, store_of(request), deployment_id))


@router.get("/api/v1/approvals", response_model=list[GateOut], summary="Deployments awaiting approval",
            responses={s: {"model": Problem} for s in (401, 403)})
async def list_awaiting(request: Request, token: Reader, env: str | None = None,
                        service: str | None = None) -> list[GateOut]:
    """Oldest first, each with its gate and decisions (an env-bound token sees its own envs only)."""
    if env is not None:
        check_env(token, env)
    bound = tq.envs_of(token)
    store = store_of(request)

    def gather() -> list[dict[str, Any]]:
        with store.session(readonly=True) as s:
            ids = [d.id for d, _ in aq.awaiting(s, service=service, env=env)
                   if bound is None or d.env in bound]
        return [gate.status(store, dep_id) for dep_id in ids]

    return [GateOut(**g) for g in await asyncio.to_thread(gather)]


# ---- the signed links' confirm page -----------------------------------------------------------------

_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                       "frame-ancestors 'none'; base-uri 'none'"}
_PAGE = {"content": {"text/html": {"schema": {"type": "string"}}}}
_LINK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The page (the confirm form, or the decision recorded)", **_PAGE},
    403: {"description": "A forged, damaged or expired link, or a form not from its page", **_PAGE},
    404: {"description": "Approval links are not configured, or no such deployment", **_PAGE},
    409: {"description": "The decision cannot count (used link, decided, not awaiting approval)", **_PAGE},
    413: {"description": "The form is too large", **_PAGE}}


def _page(status: int, title: str, body: str) -> HTMLResponse:
    text = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width, initial-scale=1'><title>{html.escape(title)} · shipyard</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;"
            "line-height:1.5}button{font-size:1rem;padding:.5rem 1rem;margin-right:.5rem}"
            "button:focus,textarea:focus{outline:3px solid #1a5fb4}textarea{width:100%}"
            "dt{font-weight:bold}</style></head>"
            f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>")
    return HTMLResponse(text, status_code=status, headers=_HEADERS)


def _claims(request: Request, token: str) -> tuple[str, links.Claims]:
    secret = _settings(request).link_secret
    if not secret:
        raise HTTPException(404, "approval links are not configured on this server")
    return secret, links.verify(secret, token)


def _summary(request: Request, claims: links.Claims) -> str:
    found = gate.status(store_of(request), claims.deployment_id)
    with store_of(request).session(readonly=True) as s:
        row = dq.get_deployment(s, claims.deployment_id)
        assert row is not None
        shown = [("Deployment", row.id), ("Service", f"{row.service}/{row.env}"), ("Revision", row.revision[:12]),
                 ("Requested by", row.actor), ("State", row.state.replace("_", " "))]
    g = found["gate"] or {}
    if g:
        shown.append(("Approved", f"{len(g['approved'])} of {g['required']}"
                                  + (f" ({', '.join(g['approved'])})" if g["approved"] else "")))
    cells = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in shown)
    return f"<dl>{cells}</dl>"


def _refused_page(exc: Exception) -> HTMLResponse:
    if isinstance(exc, HTTPException):
        return _page(exc.status_code, "Not available", f"<p>{html.escape(str(exc.detail))}</p>")
    status = 404 if isinstance(exc, NotFoundError) else 409
    return _page(status, "Not recorded", f"<p>{html.escape(str(exc))}</p>")


@router.get("/approve/{token}", response_class=HTMLResponse, responses=_LINK_RESPONSES,
            summary="The confirm page of a signed approval link (never decides)")
def get_link(request: Request, token: str) -> HTMLResponse:
    try:
        secret, claims = _claims(request, token)
    except ApprovalRefused as exc:
        return _page(403, "Link not valid", f"<p>{html.escape(str(exc))}</p>")
    except HTTPException as exc:
        return _refused_page(exc)
    try:
        summary = _summary(request, claims)
    except NotFoundError as exc:
        return _refused_page(exc)
    who, form_token = html.escape(claims.approver), links.form_token(secret, claims)
    form = (f"<p>You are deciding as <strong>{who}</strong>. This link works once and until "
            f"{claims.expires:%Y-%m-%d %H:%M} UTC.</p>"
            "<form method='post'>"
            f"<input type='hidden' name='form_token' value='{html.escape(form_token, quote=True)}'>"
            "<p><label for='comment'>Comment (optional)</label><br>"
            "<textarea id='comment' name='comment' rows='3' maxlength='1000'></textarea></p>"
            "<p><button type='submit' name='decision' value='approve'>Approve</button>"
            "<button type='submit' name='decision' value='reject'>Reject</button></p></form>")
    return _page(200, f"Approve {claims.deployment_id}?", summary + form)


@router.post("/approve/{token}", response_class=HTMLResponse, responses=_LINK_RESPONSES,
             summary="Decide through a signed approval link (its confirm page's form)")
async def post_link(request: Request, token: str) -> HTMLResponse:
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
        return _page(403, "Not recorded", "<p>The form was sent from another site.</p>")
    raw = await request.body()
    if len(raw) > MAX_FORM:
        return _page(413, "Not recorded", "<p>The form is too large.</p>")
    form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"), max_num_fields=10).items()}
    try:
        secret, claims = _claims(request, token)
        links.check_form_token(secret, claims, form.get("form_token", ""))
    except ApprovalRefused as exc:
        return _page(403, "Not recorded", f"<p>{html.escape(str(exc))}</p>")
    except HTTPException as exc:
        return _refused_page(exc)
    decision = form.get("decision", "")
    if decision not in ("approve", "reject"):
        return _page(403, "Not recorded", "<p>Choose Approve or Reject on the link's page.</p>")
    try:
        done = await asyncio.to_thread(gate.decide, store_of(request), claims.deployment_id,
                                       approver=claims.approver, decision=decision,
                                       comment=form.get("comment", ""), via="link", nonce=claims.nonce,
                                       notifications=_settings(request).notifications)
    except (ApprovalRefused, NotFoundError) as exc:
        return _refused_page(exc)
    what = ("Rejected: the deployment is cancelled." if decision == "reject" else
            f"Approved ({len(done['approved'])} of {done['required']}).")
    return _page(200, what, f"<p>Recorded as {html.escape(claims.approver)} for "
                            f"{html.escape(claims.deployment_id)}.</p>")
