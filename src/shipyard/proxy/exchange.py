"""One request and its response (``Exchange``), and the face each part of the proxy shows the others.

The client side (client.py) and the backend side (upstream.py) never import each other or the server:
they meet through an Exchange and the small Protocols below, so the package layers without a circle:
options, metrics, wire, websocket -> backends -> exchange -> tunnel -> upstream, client -> drain,
sweeper -> server.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from .backends import BackendState
from .options import RouterOptions

# Request bytes kept so a request can be re-sent to another backend; a larger body is streamed and the
# request can no longer be retried once part of it went out (HAProxy: a request that does not fit its
# buffer is never retried).
RETRY_BUFFER = 64 * 1024
# Bits of ClientConnection.paused: why reading from the client is stopped.
PAUSE_UPSTREAM, PAUSE_BODY, PAUSE_PIPELINE, PAUSE_HELD = 1, 2, 4, 8
# Why an attempt failed (HAProxy's retry-on names); all but CONN_FAILURE mean the request went out.
CONN_FAILURE, EMPTY_RESPONSE, RESPONSE_TIMEOUT = "conn-failure", "empty-response", "response-timeout"


class Router(Protocol):
    """What the connections need from the server: the loop, the options, dispatch and failure handling."""

    loop: asyncio.AbstractEventLoop
    closing: bool
    keepalive: bool  # False while retiring or closing: responses end their connection
    opts: RouterOptions
    clients: set[Any]

    def dispatch(self, ex: Exchange) -> None: ...

    def retry_or_fail(self, ex: Exchange, failed: BackendState, cause: str) -> None: ...

    def fail(self, ex: Exchange, state: BackendState, status: int) -> None: ...

    def is_trusted(self, host: str) -> bool: ...


class Downstream(Protocol):
    """The client connection, as the backend side sees it."""

    transport: asyncio.Transport
    write_paused: bool

    def response_done(self, ex: Exchange, close: bool, now: float) -> None: ...

    def respond_error(self, ex: Exchange, status: int) -> None: ...

    def drop(self, ex: Exchange) -> None: ...

    def abort(self) -> None: ...

    def start_tunnel(self, ex: Exchange, tunnel: Any) -> None: ...

    def pause(self, reason: int) -> None: ...

    def resume(self, reason: int) -> None: ...


class Upstream(Protocol):
    """The backend connection, as the client side sees it."""

    transport: asyncio.Transport
    state: BackendState

    def abandon(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class Exchange:
    """One request and its response; ``chunks`` keeps the request bytes while it is still retryable."""

    __slots__ = ("attempts", "chunked", "chunks", "client", "close_after", "complete", "done", "error", "first",
                 "http11", "idempotent", "is_head", "keep_alive", "responded", "size", "started", "state", "status",
                 "tried", "upgrade", "upstream")

    def __init__(self, client: Downstream, head: bytes, started: float, keep_alive: bool = True,
                 http11: bool = True, is_head: bool = False, idempotent: bool = True, upgrade: bool = False,
                 first: bool = True) -> None:
        self.client = client
        self.chunks: list[bytes] | None = [head]
        self.size = len(head)
        self.started = started
        self.upstream: Upstream | None = None
        self.state: BackendState | None = None
        self.attempts = 0
        self.tried: set[str] | None = None
        self.status = 0
        self.error = 0  # a proxy error waiting for the rest of the request body (then keep-alive)
        self.responded = False  # a response byte reached the client: no retry, no error page
        self.complete = False  # the whole request arrived from the client
        self.done = False  # the outcome is settled (answered, failed or abandoned)
        self.chunked = False
        self.is_head = is_head
        self.keep_alive = keep_alive  # the client lets the connection live on after this response
        self.close_after = False  # the response is framed by closing the client connection
        self.http11 = http11
        self.idempotent = idempotent
        self.first = first  # the first request of its client connection (HAProxy: not TX_NOT_FIRST)
        self.upgrade = upgrade

    def release(self) -> None:
        """Stop counting this request as in flight on its backend (exactly once per dispatch)."""
        state = self.state
        if state is not None:
            self.state = None
            state.request_done()

    def abandon(self) -> None:
        """The client is gone: close the backend connection mid-exchange and stop counting it at once."""
        if self.done:
            return
        self.done = True
        self.chunks = None  # nothing will ever re-send it
        up = self.upstream
        self.upstream = None
        if up is not None:
            up.abandon()
        self.release()

    def feed(self, data: bytes) -> None:
        """More request body bytes."""
        if self.done and self.upstream is None:
            return
        chunks = self.chunks
        up = self.upstream
        if chunks is None:
            if up is not None:
                up.transport.write(data)
            return
        chunks.append(data)
        self.size += len(data)
        if up is not None:
            up.transport.write(data)
            if self.size > RETRY_BUFFER:
                self.chunks = None
        elif self.size > RETRY_BUFFER:
            self.client.pause(PAUSE_BODY)  # hold the client until a backend can take the body

    def flush_to(self, transport: asyncio.Transport) -> None:
        """Send everything received so far to a freshly attached backend connection."""
        chunks = self.chunks
        if chunks is None:  # cannot happen: only attached exchanges drop their buffer
            return
        if len(chunks) == 1:
            transport.write(chunks[0])
        else:
            transport.writelines(chunks)
        if self.size > RETRY_BUFFER:
            self.chunks = None
            self.client.resume(PAUSE_BODY)
