"""The client side: one Protocol per accepted connection, one ``Exchange`` per request on it.

The request head is rebuilt from httptools callbacks (that is where hop-by-hop headers are dropped and
X-Forwarded-For is added); the body is streamed as it arrives. Requests are answered strictly in order
(pipelined ones wait in ``queue``), each on a backend picked for that request alone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

if TYPE_CHECKING:
    from .backends import BackendState
    from .server import RouterServer
    from .upstream import UpstreamConnection

# Request bytes kept so a request can be re-sent to another backend; a larger body is streamed and
# the request can no longer be retried once part of it went out.
RETRY_BUFFER = 64 * 1024
MAX_PIPELINE = 16
MAX_HEAD = 64 * 1024  # request line + headers; more is refused (400) instead of buffered without bound
# Bits of ClientConnection.paused: why reading from the client is stopped.
PAUSE_UPSTREAM, PAUSE_BODY, PAUSE_PIPELINE = 1, 2, 4

# Dropped from HTTP/1.1 requests: they describe this hop, not the request (RFC 9110 7.6.1).
_SPECIAL = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade",
     b"x-forwarded-for", b"x-forwarded-proto"}
)
_REASONS = {400: b"Bad Request", 502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout"}


def error_response(status: int) -> bytes:
    """A small proxy-generated response; it always closes the connection (the request may be unread)."""
    body = b"%d %s\n" % (status, _REASONS[status])
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (status, _REASONS[status], len(body), body)
    )


class Exchange:
    """One request and its response; ``chunks`` keeps the request bytes while it is still retryable."""

    __slots__ = (
        "attempts",
        "chunked",
        "chunks",
        "client",
        "complete",
        "done",
        "is_head",
        "keep_alive",
        "responded",
        "size",
        "started",
        "state",
        "status",
        "tried",
        "upgrade",
        "upstream",
        "upstream_keep_alive",
    )

    def __init__(self, client: ClientConnection, head: bytes, started: float) -> None:
        self.client = client
        self.chunks: list[bytes] | None = [head]
        self.size = len(head)
        self.started = started
        self.upstream: UpstreamConnection | None = None
        self.state: BackendState | None = None
        self.attempts = 0
        self.tried: set[str] | None = None
        self.status = 0
        self.responded = False  # a response byte reached the client: no retry, no error page
        self.complete = False  # the whole request arrived from the client
        self.done = False  # the outcome is settled (answered, failed or aborted)
        self.chunked = False
        self.is_head = False
        self.keep_alive = True
        self.upstream_keep_alive = True
        self.upgrade = False

    def release(self) -> None:
        """Stop counting this request as in flight on its backend (exactly once per dispatch)."""
        state = self.state
        if state is not None:
            self.state = None
            state.request_done()

    def feed(self, data: bytes) -> None:
        """More request bytes (body, or raw tunnel bytes after an upgrade request)."""
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


class ClientConnection(asyncio.Protocol):
    """Protocol for one downstream (client) connection."""

    __slots__ = (
        "active",
        "closing",
        "current",
        "fwd",
        "head_size",
        "headers",
        "hop",
        "last_active",
        "loop",
        "parser",
        "paused",
        "queue",
        "raw",
        "router",
        "transport",
        "tunnel",
        "url",
        "write_paused",
        "xff",
        "xfp",
    )

    def __init__(self, router: RouterServer) -> None:
        self.router = router
        self.loop = router.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.parser = HttpRequestParser(self)
        self.url = b""
        self.head_size = 0
        self.headers: list[bytes] = []
        self.hop: list[tuple[bytes, bytes, bytes]] = []
        self.xff = b""
        self.xfp = False
        self.fwd = b""
        self.current: Exchange | None = None  # request being received
        self.active: Exchange | None = None  # request being answered
        self.queue: deque[Exchange] = deque()
        self.raw: Exchange | None = None  # after an upgrade request: client bytes go here unparsed
        self.tunnel: UpstreamConnection | None = None
        self.closing = False
        self.paused = 0
        self.write_paused = False
        self.last_active = 0.0

    # -- asyncio callbacks ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.fwd = str(peer[0]).encode() if isinstance(peer, tuple) else b""
        self.last_active = self.loop.time()
        self.router.clients.add(self)

    def data_received(self, data: bytes) -> None:
        if self.raw is not None:
            self.raw.feed(data)
            return
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            ex = self.raw = self.active if self.active is not None and self.active.upgrade else None
            if ex is not None:
                rest = data[exc.args[0] :]
                if rest:
                    ex.feed(rest)
            else:  # an upgrade request behind pipelined ones: refuse rather than reorder
                self._close_with(400)
        except HttpParserError:
            self._close_with(400)

    def eof_received(self) -> bool | None:
        # A client may half-close after its request; keep the socket to send the answer. (A tunnel is
        # closed as a whole: websockets never half-close.)
        if self.active is not None and self.tunnel is None:
            self.closing = True
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.router.clients.discard(self)
        if self.tunnel is not None:
            self.tunnel.close()
            return
        ex = self.active
        if ex is not None and not ex.done:
            ex.done = True
            up = ex.upstream
            if up is not None:  # the backend connection is mid-exchange: it cannot be reused
                up.exchange = None
                up.state.busy.discard(up)
                up.close()
            ex.release()
            ex.upstream = None

    def pause_writing(self) -> None:
        # The client reads slower than the backend sends: stop reading the backend.
        self.write_paused = True
        up = self.tunnel if self.tunnel is not None else (self.active.upstream if self.active else None)
        if up is not None:
            up.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        up = self.tunnel if self.tunnel is not None else (self.active.upstream if self.active else None)
        if up is not None:
            up.resume_reading()

    # -- httptools callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.head_size = 0
        self.url = b""
        self.headers = []
        self.hop = []
        self.xff = b""
        self.xfp = False

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_HEAD:
            raise ValueError("request line too long")  # surfaces as HttpParserError -> 400

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size > MAX_HEAD:
            raise ValueError("request headers too large")
        lname = name.lower()
        if lname in _SPECIAL:
            self._special(lname, name, value)
        else:
            self.headers += (name, b": ", value, b"\r\n")

    def _special(self, lname: bytes, name: bytes, value: bytes) -> None:
        if lname == b"x-forwarded-for":
            self.xff += value + b", "  # several headers = one comma-separated list
        elif lname == b"x-forwarded-proto":
            self.xfp = True
            self.headers += (name, b": ", value, b"\r\n")
        else:  # hop-by-hop: kept or dropped in on_headers_complete, once the version is known
            self.hop.append((lname, name, value))

    def on_headers_complete(self) -> None:
        if self.closing:
            return
        p = self.parser
        method = p.get_method()
        version = p.get_http_version()
        upgrade = p.should_upgrade()
        parts = [method, b" ", self.url, b" HTTP/", version.encode(), b"\r\n", *self.headers]
        if self.hop:
            # HTTP/1.0 keeps its own keep-alive negotiation; an upgrade needs Connection + Upgrade.
            for lname, name, value in self.hop:
                if version != "1.1" or (upgrade and lname in (b"connection", b"upgrade")):
                    parts += (name, b": ", value, b"\r\n")
        parts += (b"X-Forwarded-For: ", self.xff, self.fwd, b"\r\n")
        if not self.xfp:
            parts.append(b"X-Forwarded-Proto: http\r\n")
        parts.append(b"\r\n")
        ex = self.current = Exchange(self, b"".join(parts), self.loop.time())
        ex.keep_alive = p.should_keep_alive()
        ex.upstream_keep_alive = version == "1.1" or ex.keep_alive
        ex.is_head = method == b"HEAD"
        ex.upgrade = upgrade
        if self.active is None:
            self.active = ex
            self.router.dispatch(ex)
        else:
            self.queue.append(ex)
            if len(self.queue) >= MAX_PIPELINE:
                self.pause(PAUSE_PIPELINE)

    def on_chunk_header(self) -> None:
        if self.current is not None:
            self.current.chunked = True

    def on_body(self, body: bytes) -> None:
        ex = self.current
        if ex is not None:
            if ex.chunked:  # the parser de-chunks; re-frame each piece as a chunk of its own
                ex.feed(b"%x\r\n%b\r\n" % (len(body), body))
            else:
                ex.feed(body)

    def on_message_complete(self) -> None:
        ex = self.current
        if ex is None:
            return
        self.current = None
        if ex.chunked:
            ex.feed(b"0\r\n\r\n")
        ex.complete = True
        if not ex.keep_alive:
            self.closing = True  # nothing after a "Connection: close" request is read

    # -- used by the upstream side and the router -------------------------------------------------
    def response_done(self, ex: Exchange, close: bool, now: float) -> None:
        """The response to ``ex`` went out in full; move on to the next pipelined request."""
        self.active = None
        self.last_active = now
        if close or not ex.keep_alive or not ex.complete or ex.upgrade or self.closing:
            self.closing = True
            self.raw = None
            self.transport.close()
            return
        if self.queue:
            nxt = self.active = self.queue.popleft()
            if self.paused & PAUSE_PIPELINE and len(self.queue) < MAX_PIPELINE // 2:
                self.resume(PAUSE_PIPELINE)
            self.router.dispatch(nxt)

    def start_tunnel(self, ex: Exchange, up: UpstreamConnection) -> None:
        """The upgrade was accepted: from now on this connection is a byte pipe to ``up``."""
        self.active = None
        self.tunnel = up
        ex.chunks = None
        self.raw = ex
        ex.done = True

    def respond_error(self, ex: Exchange, status: int) -> None:
        """Answer a request the router could not forward; never leaves the client waiting."""
        ex.done = True
        ex.upstream = None
        if self.active is ex:
            self.active = None
        self._close_with(status)

    def abort(self) -> None:
        """A response broke off mid-way: closing is the only way to tell the client."""
        self.active = None
        self.closing = True
        self.raw = None
        self.transport.close()

    def pause(self, reason: int) -> None:
        if not self.paused and not self.closing:
            self.transport.pause_reading()
        self.paused |= reason

    def resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and not self.transport.is_closing():
                self.transport.resume_reading()

    def _close_with(self, status: int) -> None:
        self.closing = True
        self.raw = None
        if self.active is not None and not self.active.done:
            return  # a response is on its way: finish it, then response_done closes
        if not self.transport.is_closing():
            self.transport.write(error_response(status))
            self.transport.close()

