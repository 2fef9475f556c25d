"""One connection from the router to a backend (pooled, keep-alive, reused across client connections).

Response bytes are forwarded to the client exactly as they arrive; the httptools parser only watches
them to learn where a response ends (so the connection can go back to the pool) and whether it turned
into a websocket tunnel. Only three parser callbacks are registered, so a small response costs two
Python-level callbacks on top of the ``write``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

if TYPE_CHECKING:
    from .backends import BackendState
    from .client import ClientConnection, Exchange
    from .server import RouterServer


class UpstreamConnection(asyncio.Protocol):
    """Protocol for the backend side; ``exchange`` is the request it currently answers (None = idle)."""

    __slots__ = (
        "client",
        "closed",
        "exchange",
        "idle_since",
        "parser",
        "reading_paused",
        "router",
        "rx",
        "seen_ex",
        "seen_rx",
        "state",
        "transport",
        "tunnel",
        "write_paused",
    )

    def __init__(self, router: RouterServer, state: BackendState) -> None:
        self.router = router
        self.state = state
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.parser = HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.client: ClientConnection | None = None
        self.tunnel = False
        self.closed = False
        self.reading_paused = False
        self.write_paused = False
        self.rx = 0  # data_received calls; the timeout sweeper compares it instead of reading the clock
        self.seen_rx = -1
        self.seen_ex: Exchange | None = None
        self.idle_since = 0.0

    # -- asyncio callbacks ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.rx += 1
        if self.tunnel:
            self.client.transport.write(data)  # type: ignore[union-attr]
            return
        ex = self.exchange
        if ex is None:  # bytes nobody asked for: the connection can no longer be trusted
            self.close()
            return
        ex.responded = True
        ex.client.transport.write(data)
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade:
            self._start_tunnel(ex)
        except HttpParserError:
            self._abort_exchange(ex, error=True)

    def on_headers_complete(self) -> None:
        ex = self.exchange
        if ex is None:
            return
        status = self.parser.get_status_code()
        if status >= 200 or status == 101:
            ex.status = status
            if ex.is_head and status >= 200:
                # A HEAD response announces a body it never sends; llhttp cannot know that, so the
                # message ends here and the connection gets a fresh parser for the next response.
                self._finish(ex, self.parser.should_keep_alive())
                self.parser = HttpResponseParser(self)

    def on_message_complete(self) -> None:
        ex = self.exchange
        if ex is None or ex.status == 0 or self.parser.should_upgrade():
            return  # interim 1xx, or a 101 that feed_data reports as HttpParserUpgrade
        self._finish(ex, self.parser.should_keep_alive())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        state = self.state
        state.busy.discard(self)
        if self.tunnel:
            state.tunnel_done(self)
            if self.client is not None:
                self.client.transport.close()
            return
        if self in state.idle:
            state.idle.remove(self)
        ex = self.exchange
        if ex is None or ex.done:
            return
        self.exchange = None
        if not ex.responded:
            # Nothing came back: a stale pooled connection or a backend that died before answering.
            ex.upstream = None
            ex.release()
            state.counters.retries += 1
            self.router.retry_or_fail(ex, state)
        elif ex.status and not self.parser.should_keep_alive():
            self._finish(ex, False)  # response delimited by connection close: it ended normally
        else:
            self._abort_exchange(ex, error=True)

    def pause_writing(self) -> None:
        # The backend is not reading fast enough: stop reading the client's request body.
        self.write_paused = True
        if self.client is not None:
            self.client.pause(1)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.client is not None:
            self.client.resume(1)

    # -- used by the router and the client side ---------------------------------------------------
    def attach(self, ex: Exchange) -> None:
        """Start answering ``ex`` on this connection: send what the client has sent so far."""
        self.exchange = ex
        client = self.client = ex.client
        self.state.busy.add(self)
        ex.upstream = self
        ex.flush_to(self.transport)
        if client.write_paused:
            self.pause_reading()

    def pause_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()

    def timed_out(self) -> None:
        """No response bytes for ``response_timeout``: answer 504 (or cut a started response)."""
        ex = self.exchange
        if ex is None or ex.done:
            return
        if ex.responded:
            self._abort_exchange(ex, error=True)
            return
        self.exchange = None
        self.state.busy.discard(self)
        ex.release()
        self.router.fail(ex, self.state, 504)
        self.close()

    # -- internals --------------------------------------------------------------------------------
    def _finish(self, ex: Exchange, keep_alive: bool) -> None:
        """The response is complete: count it, pool or close this connection, free the client."""
        self.exchange = None
        ex.done = True
        ex.upstream = None  # late request-body bytes must not reach a connection now serving others
        state = self.state
        now = self.router.loop.time()
        state.counters.record(ex.status, now - ex.started)
        ex.release()
        client = ex.client
        if self.write_paused:
            client.resume(1)
        reusable = keep_alive and ex.complete and ex.upstream_keep_alive and not self.write_paused
        if reusable and not state.draining and not self.closed and not self.router.closing:
            state.busy.discard(self)
            self.client = None
            self.resume_reading()
            self.idle_since = now
            state.idle.append(self)
        else:
            state.busy.discard(self)
            self.client = None
            self.close()
        client.response_done(ex, not keep_alive, now)

    def _start_tunnel(self, ex: Exchange) -> None:
        """The backend answered 101: from now on bytes flow both ways unparsed until either side closes."""
        state = self.state
        self.exchange = None
        ex.done = True
        self.tunnel = True
        state.counters.record(101, self.router.loop.time() - ex.started)
        ex.release()
        state.tunnels.add(self)
        ex.client.start_tunnel(ex, self)

    def _abort_exchange(self, ex: Exchange, error: bool) -> None:
        """A response broke after it started: the client can only learn that from a closed connection."""
        self.exchange = None
        ex.done = True
        ex.upstream = None
        state = self.state
        if error:
            state.counters.errors += 1
        state.counters.record(ex.status or 502, self.router.loop.time() - ex.started)
        state.busy.discard(self)
        ex.release()
        self.close()
        ex.client.abort()
