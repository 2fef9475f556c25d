"""The server side of the agent's and the routers' admin APIs: JSON errors with the right status, body
and field validation.

Every error leaves as {"error": "..."} with a 4xx/5xx status, so a client raises the server's own
words; validation happens at the edge so a bad request is a 400 naming the field, never a 500.
"""

from __future__ import annotations

import json
import logging
import math
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from shipyard.errors import AgentError, StatusError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve_unix(app: web.Application, sock: socket.socket) -> tuple[web.AppRunner, web.SockSite]:
    """Serve `app` on a bound, listening unix socket (no access log, signals left to the caller)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock.setblocking(False)
    site = web.SockSite(runner, sock)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site


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
