"""One connection from the router to a backend (pooled, keep-alive, reused across client connections).

Each chunk from the backend is parsed before any of it is forwarded: the response head is rebuilt from
the parser's callbacks (hop-by-hop headers dropped, framing and Connection written by the router), body
pieces are re-framed for the client (as they came when the length is known, chunked when it is not),
and what one chunk produced goes out in one write only once the whole chunk parsed. So a malformed
response (not HTTP, conflicting Content-Length, bad chunking) becomes a 502 while no byte of it reached
the client, and the client connection outlives a backend that closes its side.
"""

from __future__ import annotations

import asyncio

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from . import wire
from .backends import BackendState
from .exchange import EMPTY_RESPONSE, PAUSE_UPSTREAM, RESPONSE_TIMEOUT, Downstream, Exchange, Router
from .tunnel import Tunnel
from .wire import CHUNKED, CLOSE, LENGTH, NONE, STATUS_LINES

# Response headers the router decides itself (RFC 9110 7.6.1; framing is rewritten).
_SPECIAL = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding",
                      b"content-length", b"upgrade"})


def _new_parser(proto: UpstreamConnection) -> HttpResponseParser:
    parser = HttpResponseParser(proto)
    # RFC 9112 6.3: with both Transfer-Encoding and Content-Length, the encoding wins and the length is
    # dropped (as HAProxy does); the connection is not reused after such a response.
    parser.set_dangerous_leniencies(lenient_chunked_length=True)
    return parser


class UpstreamConnection(asyncio.Protocol):
    """Protocol for the backend side; ``exchange`` is the request it currently answers (None = idle)."""

    __slots__ = ("cl", "client", "closed", "conn", "eof_body", "exchange", "head", "idle_since", "interim", "junk",
                 "mode", "out", "parser", "pool_after", "rare", "reading_paused", "reason", "router", "rx",
                 "rx_at", "seen_ex", "seen_rx", "state", "te", "transport", "tunnel", "upgrade", "write_paused")

    def __init__(self, router: Router, state: BackendState) -> None:
        self.router = router
        self.state = state
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.parser = _new_parser(self)
        self.exchange: Exchange | None = None
        self.client: Downstream | None = None
        self.tunnel: Tunnel | None = None
        self.closed = False
        self.reading_paused = False
        self.write_paused = False
        self.rx = 0  # data_received calls; the timeout sweeper compares it instead of reading the clock
        self.rx_at = 0  # rx when the current exchange was attached (anything received since?)
        self.seen_rx = -1
        self.seen_ex: Exchange | None = None
        self.idle_since = 0.0
        self.out: list[bytes] = []  # what the chunk being parsed sends to the client
        self.pool_after = False  # the response ended inside this chunk: pool once the chunk is parsed
        self.junk = False  # bytes nobody asked for: never reuse this connection
        # Per-response parse state; ``rare`` marks the seldom-set part (reset only when set).
        self.head: list[bytes] = []
        self.reason = b""
        self.cl: bytes | None = None
        self.mode = NONE
        self.rare = False
        self._reset_rare()

    def _reset_rare(self) -> None:
        self.te: bytes | None = None
        self.conn: list[bytes] | None = None
        self.upgrade: bytes | None = None
        self.interim = False
        self.eof_body = False

    # -- asyncio callbacks ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.rx += 1
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.from_backend(data)
            return
        ex = self.exchange
        if ex is None:  # bytes nobody asked for: the connection can no longer be trusted
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            self._flush(ex)
            self._start_tunnel(ex, data[exc.args[0] :])
            return
        except HttpParserError:
            self._broken()
            return
        if self.out and self.exchange is ex:
            self._flush(ex)
        if self.pool_after:  # the response ended in this chunk: reuse, unless something followed it
            self.pool_after = False
            if self.junk or self.reason or self.head:  # (reset when it ended: the start of an unasked head)
                self.close()
            else:
                if self.reading_paused:
                    self.resume_reading()
                self.state.idle.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        state = self.state
        state.busy.discard(self)
        if self.tunnel is not None:
            self.tunnel.backend_closed()
            return
        if self in state.idle:
            state.idle.remove(self)
        ex = self.exchange
        if ex is None or ex.done:
            return
        if ex.status and self.eof_body:  # a body delimited by the backend closing: it ended normally
            if self.mode == CHUNKED:
                self.out.append(b"0\r\n\r\n")
            self._finish(ex, False)
            return
        self.exchange = None
        ex.upstream = None
        if ex.responded:
            self._abort_exchange(ex)
        elif self.rx == self.rx_at:  # not a byte back: a stale pooled connection or a dead backend
            ex.release()
            self.router.retry_or_fail(ex, state, EMPTY_RESPONSE)
        else:  # part of a head, then nothing: a broken response
            ex.release()
            self.router.fail(ex, state, 502)

    def pause_writing(self) -> None:
        # The backend is not reading fast enough: stop reading the client's request body.
        self.write_paused = True
        if self.client is not None:
            self.client.pause(PAUSE_UPSTREAM)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.client is not None:
            self.client.resume(PAUSE_UPSTREAM)

    # -- httptools callbacks ----------------------------------------------------------------------
    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        # After the head, ``head`` starts afresh and collects the trailer fields of a chunked body.
        lname = name.lower()
        if lname not in _SPECIAL:
            self.head += (name, b": ", value, b"\r\n")
        elif lname == b"content-length":
            self.cl = value
        elif lname == b"connection":
            if value.lower() not in _PLAIN_CONNECTION:  # it names headers to drop (or odd spelling)
                self.rare = True
                self.conn = [*(self.conn or ()), value]
        elif lname == b"transfer-encoding":
            self.rare = True
            self.te = value if self.te is None else self.te + b", " + value
        elif lname == b"upgrade":
            self.rare = True
            self.upgrade = value
        # keep-alive, proxy-connection, te: this hop only

    def on_headers_complete(self) -> None:
        ex = self.exchange
        if ex is None:
            self.junk = True
            return
        status = self.parser.get_status_code()
        out = self.out
        out.append(STATUS_LINES.get((status, self.reason)) or wire.status_line(status, self.reason))
        head = self.head
        self.head = []
        out += head if not self.rare or self.conn is None else wire.drop_named(head, wire.connection_tokens(self.conn))
        if status < 200 and status != 101:  # interim (100 Continue, 103): forwarded, the final one follows
            self.rare = self.interim = True
            out.append(b"\r\n")
            return
        ex.status = status
        cl = self.cl
        if cl is not None and not self.rare and not ex.is_head and status != 204 and status != 304:
            self.mode = LENGTH  # the common case, inline: the length is known, the body goes as it is
            if ex.keep_alive and self.router.keepalive:
                out += (b"Content-Length: ", cl, b"\r\n\r\n" if ex.http11 else b"\r\nConnection: keep-alive\r\n\r\n")
            else:
                ex.close_after = True
                out += (b"Content-Length: ", cl, b"\r\nConnection: close\r\n\r\n")
            return
        out += (self._framing(ex, status), b"\r\n")
        if ex.is_head and status != 101:
            # A HEAD response announces a body it never sends; llhttp cannot know that, so the message
            # ends here and the connection gets a fresh parser for the next response.
            self._finish(ex, self.parser.should_keep_alive())
            self.parser = _new_parser(self)

    def on_body(self, body: bytes) -> None:
        mode = self.mode
        if mode in (LENGTH, CLOSE):
            self.out.append(body)
        elif mode == CHUNKED:
            self.out += (b"%x\r\n" % len(body), body, b"\r\n")
        else:  # a body after a message that has none: the stream is off
            self.junk = True

    def on_message_complete(self) -> None:
        if self.interim:  # the final response's head comes next
            self.head, self.reason, self.cl, self.interim = [], b"", None, False
            return
        ex = self.exchange
        if ex is None or ex.status == 0 or ex.status == 101:
            return  # junk, or a 101 that feed_data reports as HttpParserUpgrade
        if self.mode == CHUNKED:  # the last chunk, with the trailer fields (collected in ``head``)
            self.out.append(b"0\r\n%s\r\n" % b"".join(self.head))
        self._finish(ex, self.parser.should_keep_alive())

    # -- used by the router and the client side ---------------------------------------------------
    def attach(self, ex: Exchange) -> None:
        """Start answering ``ex`` on this connection: send what the client has sent so far."""
        self.exchange = ex
        client = self.client = ex.client
        self.state.busy.add(self)
        ex.upstream = self
        self.rx_at = self.rx
        ex.flush_to(self.transport)
        if client.write_paused:
            self.pause_reading()

    def abandon(self) -> None:
        """The client went away mid-exchange: this connection is in an unknown state, close it."""
        self.exchange = None
        self.client = None
        self.out.clear()
        self.pool_after = False
        self.state.busy.discard(self)
        self.close()

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

    def sweep(self, now: float) -> None:
        """Response timeout: the backend sent nothing for ``response_timeout`` while it owed bytes.

        Not while the request is still arriving (the client's timeout), nor while reading is paused
        because the client does not keep up (the client's timeout again).
        """
        ex = self.exchange
        if ex is None or self.tunnel is not None:
            return
        if not ex.complete or self.reading_paused or self.rx != self.seen_rx or self.seen_ex is not ex:
            self.seen_rx, self.seen_ex, self.idle_since = self.rx, ex, now
        elif now - self.idle_since >= self.router.opts.response_timeout:
            self.timed_out()

    def timed_out(self) -> None:
        """No response bytes for ``response_timeout``: 504 (or a retry), or cut a started response."""
        ex = self.exchange
        if ex is None or ex.done:
            return
        if ex.responded:
            self._abort_exchange(ex)
            return
        self.exchange = None
        self.state.busy.discard(self)
        ex.upstream = None
        ex.release()
        self.close()
        self.router.retry_or_fail(ex, self.state, RESPONSE_TIMEOUT)

    # -- internals --------------------------------------------------------------------------------
    def _framing(self, ex: Exchange, status: int) -> bytes:
        """Choose how the body goes to the client; return the framing and Connection headers."""
        self.mode, eof_body, ex.close_after, framing = wire.choose_framing(
            status, ex.is_head, ex.http11, ex.keep_alive and self.router.keepalive, self.cl, self.te,
            self.upgrade)
        if eof_body:
            self.rare = self.eof_body = True
        return framing

    def _flush(self, ex: Exchange) -> None:
        out = self.out
        if out:
            ex.client.transport.write(b"".join(out))
            out.clear()
            if ex.status:  # an interim 1xx alone still allows a 502 (HAProxy does the same)
                ex.responded = True

    def _finish(self, ex: Exchange, reusable: bool) -> None:
        """The response is complete: send it, count it, pool or close this connection, free the client."""
        self.exchange = None
        ex.done = True
        ex.upstream = None  # late request-body bytes must not reach a connection now serving others
        out = self.out
        if out:
            ex.client.transport.write(b"".join(out))
            out.clear()
            ex.responded = True
        state = self.state
        now = self.router.loop.time()
        state.counters.record(ex.status, now - ex.started)
        owner = ex.state
        if owner is not None:  # ex.release(), inline: this runs once per response
            ex.state = None
            owner.request_done()
        client = ex.client
        if self.write_paused:
            client.resume(PAUSE_UPSTREAM)
        self.client = None
        state.busy.discard(self)
        if self.head:  # trailer fields of a chunked body
            self.head = []
        self.reason = b""
        self.cl = None
        self.mode = NONE
        if self.rare:
            self.rare = False
            self._reset_rare()
        if (reusable and ex.complete and not self.write_paused and not self.junk and not state.draining
                and not self.router.closing):
            self.idle_since = now
            self.pool_after = True  # once the chunk is parsed: bytes after the response void it
        else:
            self.close()
        client.response_done(ex, ex.close_after, now)

    def _broken(self) -> None:
        """The backend sent something that is not HTTP: 502 if the client saw nothing yet, else cut."""
        ex = self.exchange
        self.out.clear()
        self.pool_after = False
        if ex is None or ex.done:  # junk after a finished response
            self.close()
            return
        if ex.responded:
            self._abort_exchange(ex)
            return
        self.exchange = None
        self.state.busy.discard(self)
        ex.upstream = None
        ex.release()
        self.close()
        self.router.fail(ex, self.state, 502)

    def _start_tunnel(self, ex: Exchange, rest: bytes) -> None:
        """The backend answered 101: from now on bytes flow both ways unparsed until either side closes."""
        state = self.state
        websocket = (self.upgrade or b"").strip().lower() == b"websocket"
        self.exchange = None
        ex.done = True
        state.counters.record(101, self.router.loop.time() - ex.started)
        ex.release()
        tunnel = self.tunnel = Tunnel(ex.client, self, state, websocket)
        state.tunnels.add(tunnel)
        ex.client.start_tunnel(ex, tunnel)
        if rest:
            tunnel.from_backend(rest)

    def _abort_exchange(self, ex: Exchange) -> None:
        """A response broke after it started: the client can only learn that from a closed connection."""
        self.exchange = None
        ex.done = True
        ex.upstream = None
        self.out.clear()
        state = self.state
        state.counters.errors += 1
        state.counters.record(ex.status or 502, self.router.loop.time() - ex.started)
        state.busy.discard(self)
        ex.release()
        self.close()
        ex.client.abort()


_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close"})
