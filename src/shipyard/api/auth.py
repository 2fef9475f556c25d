"""Bearer tokens for the API: 401 without a valid one, 403 outside its scopes or environments.

`require(scope)` is a FastAPI dependency giving the endpoint the caller's token; an endpoint that concerns
one environment checks it with `check_env`. Token lookups are short read sessions; a use is recorded at
most once a minute per token (store.tokens.touch)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Select

from shipyard.store import Store
from shipyard.store import tokens as tq
from shipyard.store.models import ApiToken

_bearer = HTTPBearer(auto_error=False, description="An API token from `shipyard tokens create`.")


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def require(scope: str) -> Callable[..., ApiToken]:
    def dependency(request: Request,
                   creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> ApiToken:
        if creds is None or creds.scheme.lower() != "bearer":
            raise HTTPException(401, "an API token is required (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})
        store = store_of(request)
        with store.session(readonly=True) as s:
            row = tq.verify_token(s, creds.credentials)
        if row is not None and tq.touch_due(row):
            with store.session() as s:
                tq.touch(s, row.id)
        if row is None:
            raise HTTPException(401, "the API token is not valid (unknown, revoked or mistyped)",
                                headers={"WWW-Authenticate": "Bearer"})
        if not tq.allows(row, scope):
            raise HTTPException(403, f"the token {row.name!r} lacks the {scope!r} scope (it has {row.scopes})")
        return row
    return dependency


def env_filter(stmt: Select[Any], token: ApiToken, column: Any, env: str | None) -> Select[Any]:
    """`stmt` limited to `env` (which the token must be allowed) or, with none asked, to the token's own
    environments: a stg token sees nothing of prod."""
    if env is not None:
        check_env(token, env)
        return stmt.where(column == env)
    bound = tq.envs_of(token)
    return stmt if bound is None else stmt.where(column.in_(sorted(bound)))


def check_env(token: ApiToken, env: str) -> None:
    bound = tq.envs_of(token)
    if bound is not None and env not in bound:
        raise HTTPException(403, f"the token {token.name!r} is bound to {', '.join(sorted(bound))}, not {env!r}")
