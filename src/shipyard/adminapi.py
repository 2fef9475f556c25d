"""What the clients of the agent's and the routers' admin APIs share: the mapping of an error answer back
to a StatusError, the transport, and how to retry while the process behind a socket restarts.

Both APIs are JSON over HTTP on a 0600 unix socket; the server side is in adminweb.py (kept apart so
the CLI, which only ever is a client, does not load a web server). StatusError, which both sides raise,
lives in shipyard.errors so that the servers (router, agent) do not load this HTTP client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Self
from urllib.parse import quote

import httpx

from shipyard.errors import StatusError
from shipyard.ipc import SocketName


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

def unix_transport(name: str) -> httpx.AsyncHTTPTransport:
    """An HTTP transport over the unix socket `name`, for one admin API client.

    No pooled connections: unix-socket connects are cheap, and a pool would tie the client to the event
    loop that opened them (the CLI may run several asyncio.run() with one client). No TLS context:
    the socket speaks plain HTTP, and building the default context (loading the CA bundle, ~50 ms)
    would be paid by every client of every CLI command."""
    return httpx.AsyncHTTPTransport(uds=name, limits=httpx.Limits(max_keepalive_connections=0), verify=False)


def unix_transport_sync(name: str) -> httpx.HTTPTransport:
    """The blocking twin of `unix_transport`, for callers without an event loop (no TLS context either)."""
    return httpx.HTTPTransport(uds=name, verify=False)


NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, FileNotFoundError, ConnectionRefusedError)
"""The request never reached a server: always safe to send again."""
DROPPED = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
"""The server went away after the request was sent: it may or may not have acted on it."""


def segment(value: str) -> str:
    """One URL path segment (a service or env name, an instance id), escaped whole."""
    return quote(value, safe="")


class UnixApiClient:
    """An admin API client on one unix socket: `async with Client(dir) as c: ...` closes what it opened."""

    def __init__(self, sock: Path, base_url: str, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self._name = SocketName(sock)
        self._http = httpx.AsyncClient(transport=unix_transport(self._name.name), base_url=base_url,
                                       timeout=httpx.Timeout(timeout, connect=5.0))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        self._name.close()


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
