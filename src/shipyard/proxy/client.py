"""The client side: one Protocol per accepted connection, one ``Exchange`` per request on it.

The request head is rebuilt from httptools callbacks: hop-by-hop headers (and those Connection names) are
dropped, the forwarding headers are set by the router (or extended, for a trusted proxy), and the
router writes its own Connection header. The body is streamed as it arrives. Requests are answered
strictly in order (pipelined ones wait in ``queue``), each on a backend picked for that request alone.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import termios
from collections import deque

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from .exchange import PAUSE_HELD, PAUSE_PIPELINE, Exchange, Router
from .tunnel import Tunnel
from .wire import IDEMPOTENT, KEEP_ALIVE_ERRORS, connection_tokens, drop_named, error_response

MAX_PIPELINE = 16
MAX_HEAD = 64 * 1024  # request line + headers; more is refused (400) instead of buffered without bound

# Request headers the router decides itself: this hop's (RFC 9110 7.6.1), and the forwarding ones.
_SPECIAL = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade", b"host",
                      b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded", b"x-real-ip"})


_HTTP10 = b" HTTP/1.0\r\nConnection: keep-alive\r\n"


class ClientConnection(asyncio.Protocol):
    """Protocol for one downstream (client) connection."""

    __slots__ = ("active", "closing", "conn", "current", "extra", "fwd", "head_mark", "head_since", "head_size",
                 "headers", "held", "host", "last_active", "loop", "parser", "paused", "peer", "queue", "rare",
                 "raw", "router", "rx", "rx_mark", "seen_rx", "seen_wbuf", "served", "since", "transport",
                 "trusted", "tunnel", "upgrade", "url", "write_paused", "wsince", "xff", "xfh", "xfp")

    def __init__(self, router: Router) -> None:
        self.router = router
        self.loop = router.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self.parser = HttpRequestParser(self)
        self.current: Exchange | None = None  # request being received
        self.active: Exchange | None = None  # request being answered
        self.queue: deque[Exchange] = deque()
        self.raw = False  # after an upgrade request: client bytes are held until the backend answers
        self.held = b""
        self.tunnel: Tunnel | None = None
        self.closing = False
        self.paused = 0
        self.write_paused = False
        self.peer = b""
        self.trusted = False
        self.fwd = b""
        self.served = 0  # requests read on this connection
        self.last_active = self.head_since = self.since = self.wsince = 0.0
        self.rx = 0  # data_received calls (the sweeper compares it instead of reading the clock)
        self.rx_mark = 0  # rx when the last request was read whole: more since = a head in progress
        self.seen_rx = self.seen_wbuf = self.head_mark = -1
        # Per-request head state, reset once the head is built; ``rare`` marks the seldom-set part.
        self.url = b""
        self.head_size = 0
        self.headers: list[bytes] = []
        self.host: bytes | None = None
        self.rare = False
        self._reset_rare()

    # -- asyncio callbacks ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) else ""
        self.peer = host.encode()
        self.trusted = bool(host) and self.router.is_trusted(host)
        self.fwd = b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: http\r\n" % self.peer
        self.last_active = self.loop.time()
        self.router.clients.add(self)

    def data_received(self, data: bytes) -> None:
        self.rx += 1
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.from_client(data)
            return
        if self.raw:
            self.held += data
            if len(self.held) > MAX_HEAD:
                self.pause(PAUSE_HELD)
            return
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            ex = self.active
            if ex is not None and ex.upgrade and not ex.done:
                self.raw = True
                self.held = data[exc.args[0] :]
            elif ex is None or not ex.upgrade:  # an upgrade behind pipelined requests: refuse, never reorder
                self._close_with(400)
        except HttpParserError:
            self._close_with(400)

    def eof_received(self) -> bool | None:
        if self.tunnel is None and self.current is None and self.rx == self.rx_mark and self.active is not None:
            # The whole request arrived and the client half-closed: it still gets its answer.
            self.closing = True
            return True
        # Mid-request (or mid-head) the request can never complete: end the exchange at once.
        self._abandon_all()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.router.clients.discard(self)
        if self.tunnel is not None:
            self.tunnel.cut()
            return
        self._abandon_all()

    def pause_writing(self) -> None:
        # The client reads slower than the backend sends: stop reading the backend.
        self.write_paused = True
        self.seen_wbuf = -1
        up = self.tunnel.upstream if self.tunnel is not None else (self.active.upstream if self.active else None)
        if up is not None:
            up.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        up = self.tunnel.upstream if self.tunnel is not None else (self.active.upstream if self.active else None)
        if up is not None:
            up.resume_reading()

    # -- httptools callbacks ----------------------------------------------------------------------
    def _reset_rare(self) -> None:
        self.conn: list[bytes] | None = None
        self.upgrade: bytes | None = None
        self.xff = b""
        self.xfp: bytes | None = None
        self.xfh: bytes | None = None
        self.extra: list[bytes] | None = None

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_HEAD:
            raise ValueError("request line too long")  # surfaces as HttpParserError -> 400

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.current is not None:
            return  # trailer fields of a chunked request body: dropped
        self.head_size += len(name) + len(value)
        if self.head_size > MAX_HEAD:
            raise ValueError("request headers too large")
        lname = name.lower()
        if lname not in _SPECIAL:
            self.headers += (name, b": ", value, b"\r\n")
        elif lname == b"host" and self.host is None:
            self.host = value
            self.headers += (name, b": ", value, b"\r\n")
        else:
            self._special(lname, name, value)

    def _special(self, lname: bytes, name: bytes, value: bytes) -> None:
        self.rare = True
        if lname == b"host":
            raise ValueError("more than one Host header")  # RFC 9112 3.2: 400
        if lname == b"x-forwarded-for":
            self.xff += value + b", "  # several headers = one comma-separated list
        elif lname == b"x-forwarded-proto":
            self.xfp = self.xfp or value
        elif lname == b"x-forwarded-host":
            self.xfh = self.xfh or value
        elif lname == b"forwarded" or lname == b"x-real-ip":  # other spellings of the same claims
            self.extra = [*(self.extra or ()), name, b": ", value, b"\r\n"]
        elif lname == b"connection":
            self.conn = [*(self.conn or ()), value]
        elif lname == b"upgrade":
            self.upgrade = value
        # keep-alive, proxy-connection, te, trailer: this hop only

    def on_headers_complete(self) -> None:
        if self.closing:
            return
        p = self.parser
        method = p.get_method()
        http11 = p.get_http_version() == "1.1"
        upgrade = p.should_upgrade()
        if http11 and self.host is None:
            raise ValueError("HTTP/1.1 request without Host")  # RFC 9112 3.2: 400
        if upgrade and method == b"CONNECT":  # (llhttp reports CONNECT as an upgrade)
            raise ValueError("CONNECT: the router is not a forward proxy")
        headers = self.headers if self.conn is None else drop_named(self.headers, connection_tokens(self.conn))
        # HTTP/1.0 stays 1.0 (it may lack Host), asking the backend to keep the connection, as HAProxy does.
        parts = [method, b" ", self.url, b" HTTP/1.1\r\n" if http11 else _HTTP10, *headers]
        if upgrade:
            parts += (b"Connection: Upgrade\r\nUpgrade: ", self.upgrade or b"", b"\r\n")
        if self.trusted:  # a proxy in front of us: keep what it says, add the hop we saw
            parts += (b"X-Forwarded-For: ", self.xff, self.peer, b"\r\nX-Forwarded-Proto: ", self.xfp or b"http",
                      b"\r\n")
            host = self.xfh or self.host
            if host is not None:
                parts += (b"X-Forwarded-Host: ", host, b"\r\n")
            if self.extra:
                parts += self.extra
        else:  # the front door: whatever the client claimed is replaced
            parts.append(self.fwd)
            if self.host is not None:
                parts += (b"X-Forwarded-Host: ", self.host, b"\r\n")
        parts.append(b"\r\n")
        self.url, self.head_size, self.headers, self.host = b"", 0, [], None
        if self.rare:
            self.rare = False
            self._reset_rare()
        ex = self.current = Exchange(self, b"".join(parts), self.loop.time(), p.should_keep_alive(), http11,
                                     method == b"HEAD", method in IDEMPOTENT, upgrade, self.served == 0)
        self.served += 1
        self.seen_rx = -1
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
        self.rx_mark = self.rx
        if ex.chunked:
            ex.feed(b"0\r\n\r\n")
        ex.complete = True
        if not ex.keep_alive:
            self.closing = True  # nothing after a "Connection: close" request is read
        if ex.error and self.active is ex:
            self._send_error(ex, ex.error)

    # -- used by the upstream side and the router -------------------------------------------------
    def response_done(self, ex: Exchange, close: bool, now: float) -> None:
        """The response to ``ex`` went out in full; move on to the next pipelined request."""
        self.active = None
        self.last_active = now
        if close or not ex.keep_alive or not ex.complete or self.closing:
            self.closing = True
            self.raw = False
            self.transport.close()
            return
        if self.raw:  # the backend refused the upgrade: what the client sent since is HTTP again
            self.loop.call_soon(self._parse_held)
            return
        if self.queue:
            nxt = self.active = self.queue.popleft()
            if self.paused & PAUSE_PIPELINE and len(self.queue) < MAX_PIPELINE // 2:
                self.resume(PAUSE_PIPELINE)
            self.router.dispatch(nxt)

    def start_tunnel(self, ex: Exchange, tunnel: Tunnel) -> None:
        """The upgrade was accepted: from now on this connection is a byte pipe."""
        self.active = None
        self.tunnel = tunnel
        ex.chunks = None
        ex.done = True
        held, self.held, self.raw = self.held, b"", False
        self.resume(PAUSE_HELD)
        if held:
            tunnel.from_client(held)

    def respond_error(self, ex: Exchange, status: int) -> None:
        """Answer a request the router could not forward; never leaves the client waiting."""
        ex.done = True
        ex.upstream = None
        ex.chunks = None
        if self.active is not ex:
            return
        if status in KEEP_ALIVE_ERRORS and ex.keep_alive and not ex.upgrade and not self.closing:
            if ex.complete:
                self._send_error(ex, status)
            else:
                ex.error = status  # answered once the rest of the body arrived (and was dropped)
            return
        self.active = None
        self._close_with(status)

    def drop(self, ex: Exchange) -> None:
        """Close without an answer, as HAProxy does when a reused connection fails a request that cannot
        be retried: the client sees what it would see from the backend itself (RFC 9112 9.3.1)."""
        ex.done = True
        ex.upstream = None
        if self.active is ex:
            self.active = None
        self.abort()

    def abort(self) -> None:
        """A response broke off mid-way: closing is the only way to tell the client."""
        self.active = None
        self.closing = True
        self.raw = False
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

    def sweep(self, now: float) -> None:
        """Client-side timeouts (called by the router's sweeper, so no per-request timer exists)."""
        if self.tunnel is not None or self.transport.is_closing():
            return
        opts = self.router.opts
        if self.current is not None:  # a request body is on its way: the client must keep sending
            if self.rx != self.seen_rx or self.paused:  # (unless the router itself holds it back)
                self.seen_rx, self.since = self.rx, now
            elif now - self.since >= opts.client_timeout:
                self._timed_out()
        elif self.write_paused:  # a response waits for the client to read it
            size = self.transport.get_write_buffer_size()
            if size != self.seen_wbuf:
                self.seen_wbuf, self.wsince = size, now
            elif now - self.wsince >= opts.client_timeout:
                self._abandon_all()
                self.transport.abort()  # close() would wait for a buffer this client never reads
        elif self.active is None and not self.queue:
            if self.rx != self.rx_mark:  # part of a head arrived: it must be whole within request_timeout
                if self.head_mark != self.rx_mark:
                    self.head_mark, self.head_since = self.rx_mark, now
                elif now - self.head_since >= opts.request_timeout:
                    self._close_with(408)
            elif now - self.last_active >= (opts.keepalive_timeout if self.served else opts.request_timeout):
                self.close_idle()  # a silent close, as for any keep-alive connection

    def close_idle(self) -> bool:
        """Close this idle connection, unless its next request already waits unread in the kernel.

        The loop may be busy for milliseconds before it reads what arrived; closing then would reset a
        request the client has sent (a socket closed with unread bytes sends RST). Such a connection is
        left open: its request is read on the next turn and answered (with Connection: close when the
        router is retiring). One the router itself holds back (``paused``) would not get to them soon,
        so it is closed anyway.
        """
        if not self.paused and _unread_bytes(self.transport):
            return False
        self.closing = True
        self.transport.close()
        return True

    # -- internals --------------------------------------------------------------------------------
    def _timed_out(self) -> None:
        """The request body stalled: 408 unless an answer already started, then close."""
        started = self.active is not None and self.active.responded
        self._abandon_all()
        if started:
            self.abort()
        else:
            self._close_with(408)

    def _abandon_all(self) -> None:
        """The client is gone (or will be): end every exchange of this connection at once."""
        self.closing = True
        for ex in (self.active, self.current):
            if ex is not None:
                ex.abandon()
        self.active = self.current = None
        self.queue.clear()

    def _send_error(self, ex: Exchange, status: int) -> None:
        self.transport.write(error_response(status, close=False, http11=ex.http11, head=ex.is_head))
        self.response_done(ex, False, self.loop.time())

    def _parse_held(self) -> None:
        held, self.held, self.raw = self.held, b"", False
        self.parser = HttpRequestParser(self)
        self.resume(PAUSE_HELD)
        if held and not self.closing:
            self.data_received(held)

    def _close_with(self, status: int) -> None:
        self.closing = True
        self.raw = False
        if self.active is not None and not self.active.done:
            return  # a response is on its way: finish it, then response_done closes
        if not self.transport.is_closing():
            self.transport.write(error_response(status))
            self.transport.close()


def _unread_bytes(transport: asyncio.Transport) -> int:
    """Bytes received by the kernel that the loop has not read yet (0 when that cannot be told)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, buf)
    except (OSError, ValueError):
        return 0
    return buf[0]
