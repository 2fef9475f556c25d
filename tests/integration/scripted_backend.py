"""A scripted HTTP/1.1 backend for proxy conformance tests: raw bytes on a real 127.0.0.1 socket.

The first path segment picks what the backend answers (``/ok/...``, ``/close/...``, ``/badchunk/...``):
well-formed answers, the malformed ones a broken app or a wrong port produces, and the ways a backend
can die mid-exchange. Every request (head, body, whether it arrived whole) and every connection is
recorded, so a test can compare what two proxies delivered to the backend and how often.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httptools

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"


@dataclass
class Seen:
    """One request as the backend received it."""

    conn: int
    method: str
    path: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    complete: bool = False

    def header(self, name: str) -> str | None:
        """All values of one header joined with ", " (RFC 9110 5.3), None when absent."""
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None


@dataclass
class ConnInfo:
    requests: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    closed_by_peer: bool = False  # the proxy closed it (EOF/reset), not the backend's script


Behaviour = Callable[["_Conn", Seen], Awaitable[None] | None]


class _Conn(asyncio.Protocol):
    def __init__(self, backend: ScriptedBackend) -> None:
        self.backend = backend
        self.id = backend.next_conn = backend.next_conn + 1
        self.info = backend.conns[self.id] = ConnInfo()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.seen: Seen | None = None
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.ws = False
        self.echo = False
        self.ws_buffer = b""
        self.ws_closed = False
        self.ws_half = False  # half of a frame went out, the rest waits for a gate
        self.ws_close_due: bytes | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    # -- asyncio ----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.echo:
            self.send(data)
            return
        if self.ws:
            self.ws_buffer += data
            self._ws_frames()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if self.echo:
                self.send(data[exc.args[0] :])
            elif self.ws:
                self.ws_buffer += data[exc.args[0] :]
                self._ws_frames()
        except httptools.HttpParserError:
            self.transport.abort()

    def eof_received(self) -> bool:
        self.info.closed_by_peer = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.info.closed_by_peer = True
        self.info.closed.set()
        for task in self.tasks:
            task.cancel()

    # -- httptools --------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        p = self.parser
        self.info.requests += 1
        seen = self.seen = Seen(self.id, p.get_method().decode(), self.url.decode("latin-1"),
                                p.get_http_version(), self.headers)
        self.backend.seen.append(seen)
        kind = _kind(seen.path)
        if kind in EARLY:
            self._run(EARLY[kind], seen)

    def on_body(self, body: bytes) -> None:
        if self.seen is not None:
            self.seen.body += body

    def on_message_complete(self) -> None:
        seen = self.seen
        if seen is None:
            return
        seen.complete = True
        kind = _kind(seen.path)
        behaviour = BEHAVIOURS.get(kind, None if kind in EARLY else _ok)
        if behaviour is not None:
            self._run(behaviour, seen)

    # -- helpers for behaviours -------------------------------------------------------------------
    def _run(self, behaviour: Behaviour, seen: Seen) -> None:
        result = behaviour(self, seen)
        if result is not None:
            task = asyncio.ensure_future(result)
            self.tasks.add(task)  # type: ignore[arg-type]
            task.add_done_callback(self.tasks.discard)  # type: ignore[arg-type]

    def send(self, data: bytes, close: bool = False) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)
        if close:
            self.transport.close()

    def close(self) -> None:
        self.transport.close()

    def _ws_frames(self) -> None:
        """Echo client frames unmasked (as a server must); answer a close frame with the same code."""
        while True:
            frame = ws_decode(self.ws_buffer)
            if frame is None:
                return
            opcode, payload, used = frame
            self.ws_buffer = self.ws_buffer[used:]
            self.backend.ws_received.append((opcode, payload))
            if self.ws_closed:
                continue
            if opcode == 0x8:
                self.ws_closed = True
                if self.ws_half:  # a websocket library finishes the frame it is sending first
                    self.ws_close_due = payload[:2]
                    continue
                self.send(ws_frame(0x8, payload[:2]))
                self.close()
                return
            if opcode == 0x9:
                self.send(ws_frame(0xA, payload))
            elif opcode == 0x1 and payload == b"half":  # half a frame now, the rest when the gate opens
                self._run(_half_frame, Seen(self.id, "WS", "/ws/half", "1.1", []))
            elif opcode in (0x1, 0x2):
                self.send(ws_frame(opcode, payload))


def ws_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final websocket frame; ``mask`` (4 bytes) for client-to-server frames."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def ws_decode(buf: bytes) -> tuple[int, bytes, int] | None:
    """(opcode, unmasked payload, bytes used) of the first whole frame in ``buf``, None if incomplete."""
    if len(buf) < 2:
        return None
    n = buf[1] & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = int.from_bytes(buf[2:4], "big"), 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = int.from_bytes(buf[2:10], "big"), 10
    mask = b""
    if buf[1] & 0x80:
        mask, pos = buf[pos : pos + 4], pos + 4
    if len(buf) < pos + n:
        return None
    payload = buf[pos : pos + n]
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return buf[0] & 0x0F, payload, pos + n


def _kind(path: str) -> str:
    return path.strip("/").split("/", 1)[0].split("?", 1)[0]


def response(status: int, body: bytes = b"", *headers: str, reason: str = "OK", length: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _ok(c: _Conn, s: Seen) -> None:
    c.send(response(200, f"ok {s.path}".encode(), f"X-Conn: {c.id}"))


def _close(c: _Conn, s: Seen) -> None:
    c.close()  # read the whole request, then die without a byte: the request may have been processed


def _close_once(c: _Conn, s: Seen) -> None:
    if c.backend.count(s.path) == 1:
        c.close()
    else:
        _ok(c, s)


async def _hang(c: _Conn, s: Seen) -> None:
    await c.backend.gate(s.path).wait()
    _ok(c, s)


def _continue(c: _Conn, s: Seen) -> None:
    if (s.header("expect") or "").lower() == "100-continue":
        c.send(b"HTTP/1.1 100 Continue\r\n\r\n")


def _continue_done(c: _Conn, s: Seen) -> None:
    c.send(response(200, b"got %d" % len(s.body)))


def _raw_upgrade(c: _Conn, s: Seen) -> None:
    """101 to a protocol that is not a websocket: the connection becomes an echo of raw bytes."""
    c.send(response(101, b"", "Upgrade: echo", "Connection: Upgrade", reason="Switching Protocols", length=False))
    c.echo = True


def _websocket(c: _Conn, s: Seen) -> None:
    key = (s.header("sec-websocket-key") or "").encode()
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()  # RFC 6455 4.2.2
    c.send(response(101, b"", "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {accept}",
                    reason="Switching Protocols", length=False))
    c.ws = True


async def _half_frame(c: _Conn, s: Seen) -> None:
    data = ws_frame(2, b"z" * 1000)
    c.ws_half = True
    c.send(data[:500])
    await c.backend.gate("ws-rest").wait()
    c.send(data[500:])
    c.ws_half = False
    if c.ws_close_due is not None:
        c.send(ws_frame(0x8, c.ws_close_due))
        c.close()


async def _bad_chunk_late(c: _Conn, s: Seen) -> None:
    c.send(response(200, b"", "Transfer-Encoding: chunked", length=False) + b"5\r\nhello\r\n")
    await c.backend.gate(s.path).wait()
    c.send(b"zz\r\nbroken\r\n0\r\n\r\n")


# Answers sent once the whole request arrived ("continue" also acts early, below).
BEHAVIOURS: dict[str, Behaviour] = {
    "ok": _ok,
    "close": _close,
    "close-once": _close_once,
    "hang": _hang,
    "continue": _continue_done,
    "nothttp": lambda c, s: c.send(b"this is not http\r\n\r\n", close=True),
    "dupcl": lambda c, s: c.send(response(200, b"hello!!", "Content-Length: 5", length=False)
                                 .replace(b"\r\n\r\n", b"\r\nContent-Length: 7\r\n\r\n", 1)),
    "badchunk": lambda c, s: c.send(response(200, b"", "Transfer-Encoding: chunked", length=False)
                                    + b"zz\r\nbroken\r\n0\r\n\r\n"),
    "badchunk-late": _bad_chunk_late,
    "clte": lambda c, s: c.send(response(200, b"5\r\nhello\r\n0\r\n\r\n", "Transfer-Encoding: chunked",
                                         "Content-Length: 3", length=False)),
    "connclose": lambda c, s: c.send(response(200, b"closing", "Connection: close"), close=True),
    "eof": lambda c, s: c.send(response(200, b"until eof", length=False), close=True),
    "http10": lambda c, s: c.send(b"HTTP/1.0 200 OK\r\n\r\nold style", close=True),
    "hop": lambda c, s: c.send(response(200, b"hop", "Connection: X-Hop-Resp, Keep-Alive",
                                        "Keep-Alive: timeout=5", "X-Hop-Resp: secret", "X-End: kept")),
    "junkafter": lambda c, s: c.send(response(200, b"exact") + b"JUNK AFTER THE RESPONSE"),
    "junkhead": lambda c, s: c.send(response(200, b"exact") + b"HTTP/1.1 200 OK\r\nX-Junk: yes\r\n"),
    "trailers": lambda c, s: c.send(response(200, b"", "Transfer-Encoding: chunked", "Trailer: X-Sum",
                                             length=False) + b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n"),
    "nocontent": lambda c, s: c.send(response(204, b"", reason="No Content", length=False)),
    "notmodified": lambda c, s: c.send(response(304, b"", "ETag: \"x\"", reason="Not Modified", length=False)),
    "chunked": lambda c, s: c.send(response(200, b"", "Transfer-Encoding: chunked", length=False)
                                   + b"4\r\nchun\r\n3\r\nked\r\n0\r\n\r\n"),
}
# Answers sent as soon as the head arrived (the body may still be on its way).
EARLY: dict[str, Behaviour] = {
    "continue": _continue,
    "ws": _websocket,
    "upgrade": _raw_upgrade,
    "early-close": _close,  # dies while the request body is still arriving
    "body-wait": lambda c, s: None,  # only records: the test watches the connection
}


class ScriptedBackend:
    """The scripted backend on an ephemeral 127.0.0.1 port; ``seen``/``conns`` record what arrived."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.conns: dict[int, ConnInfo] = {}
        self.next_conn = 0
        self.gates: dict[str, asyncio.Event] = {}
        self.ws_received: list[tuple[int, bytes]] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> ScriptedBackend:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Conn(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for gate in self.gates.values():
            gate.set()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def gate(self, path: str) -> asyncio.Event:
        return self.gates.setdefault(path, asyncio.Event())

    def requests(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def count(self, path: str) -> int:
        return len(self.requests(path))
