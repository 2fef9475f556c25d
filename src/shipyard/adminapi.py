"""What the agent's and the routers' admin APIs share: JSON errors with the right status, body and
field validation, and the client-side mapping of an error answer back to an exception.

Both are JSON over HTTP on a 0600 unix socket. Every error leaves as {"error": "..."} with a 4xx/5xx
status, so a client raises the server's own words; validation happens at the edge so a bad request
is a 400 naming the field, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
from aiohttp import web

from shipyard.errors import AgentError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StatusError(AgentError):
    """Base of the errors an admin API answers with a status of its own choosing."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def errors_middleware(refuse: Callable[[web.Request], str | None] = lambda _r: None) -> Any:
    """Map raised errors to JSON answers; `refuse` may turn a request away first (503 with its reason)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        reason = refuse(request)
        if reason is not None:
            return error(503, reason)
        try:
            return await handler(request)
        except AgentError as exc:
            return error(getattr(exc, "status", 500), str(exc))
        except web.HTTPException as exc:
            if exc.status >= 400:
                return error(exc.status, exc.reason)
            raise
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.path)
            return error(500, f"internal error: {type(exc).__name__}: {exc}")

    return middleware


async def read_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StatusError(f"request body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise StatusError("request body must be a JSON object")
    return data


def field_str(data: Mapping[str, Any], key: str, required: bool = True) -> Any:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise StatusError(f"{key}: a non-empty string is required")
    return value


def field_num(value: Any, key: str, *, required: bool = False) -> float | None:
    if value is None and not required:
        return None
    try:
        num = float(value)
    except (TypeError, ValueError):
        raise StatusError(f"{key}: a number is required") from None
    if not math.isfinite(num) or num < 0:
        raise StatusError(f"{key}: must be a finite number >= 0")
    return num


def raise_for_response(resp: httpx.Response, by_status: Mapping[int, type[StatusError]],
                       default: type[StatusError]) -> None:
    """Turn an error answer into the matching exception, carrying the server's message and status."""
    if resp.status_code < 400:
        return
    try:
        message = str(resp.json().get("error") or resp.text)
    except (ValueError, AttributeError):
        message = resp.text or resp.reason_phrase
    raise by_status.get(resp.status_code, default)(message, resp.status_code)


# ---- clients -------------------------------------------------------------------------------------

NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, FileNotFoundError, ConnectionRefusedError)
"""The request never reached a server: always safe to send again."""
DROPPED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
"""The server went away after the request was sent: it may or may not have acted on it."""


class Retry:
    """How long a client keeps trying while the process behind a socket is being replaced.

    `can_wait()` says whether waiting makes sense at all (a keeper is there to bring the process back);
    without one, a refused connection is reported at once, with the command that fixes it.
    """

    def __init__(self, budget: float, can_wait: Callable[[], Awaitable[bool]], interval: float = 0.1) -> None:
        self.budget, self.can_wait, self.interval = budget, can_wait, interval

    async def send(self, attempt: Callable[[], Awaitable[httpx.Response]], *, idempotent: bool,
                   retry_status: Callable[[httpx.Response], bool] = lambda _r: False) -> httpx.Response:
        """Run `attempt` until it gets an answer; re-send only what is safe to send twice.

        Not sent (connection refused): re-sent whatever the method. Dropped after sending (the server
        died mid-request) or answered with `retry_status`: re-sent only when `idempotent`.
        """
        first_failure: float | None = None    # the budget runs from the first failure, not the start
        while True:
            try:
                resp = await attempt()
            except NOT_SENT:
                first_failure = first_failure or time.monotonic()
                if not await self._again(first_failure):
                    raise
                continue
            except DROPPED:
                first_failure = first_failure or time.monotonic()
                if not idempotent or not await self._again(first_failure):
                    raise
                continue
            if idempotent and retry_status(resp):
                first_failure = first_failure or time.monotonic()
                if await self._again(first_failure):
                    continue
            return resp

    async def _again(self, first_failure: float) -> bool:
        if time.monotonic() >= first_failure + self.budget or not await self.can_wait():
            return False
        await asyncio.sleep(self.interval)
        return True
