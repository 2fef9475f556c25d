"""Real backends and a raw HTTP/1.x client for the router tests.

Backends are small aiohttp apps on ephemeral 127.0.0.1 ports; the raw client speaks bytes on one
socket so tests can see exactly what keep-alive, HTTP/1.0 and Connection: close do on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httptools
from aiohttp import WSMsgType, web

from shipyard.proxy import RouterServer

Scenario = Callable[["RouterServer", list["LiveBackend"]], Awaitable[None]]


@dataclass
class LiveBackend:
    name: str
    runner: web.AppRunner
    port: int
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    started: dict[str, asyncio.Event] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def gate(self, key: str) -> asyncio.Event:
        return self.gates.setdefault(key, asyncio.Event())

    def began(self, key: str) -> asyncio.Event:
        return self.started.setdefault(key, asyncio.Event())

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_backend(name: str) -> LiveBackend:
    """An aiohttp backend whose answers say which backend (and which TCP connection) served them."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    holder: dict[str, LiveBackend] = {}

    def peer(request: web.Request) -> str:
        info = request.transport.get_extra_info("peername") if request.transport else None
        return str(info[1]) if info else "?"

    async def hello(request: web.Request) -> web.Response:
        return web.Response(
            text=name,
            headers={"X-Backend": name, "X-Peer-Port": peer(request), "X-Seen-Host": request.host,
                     "X-Seen-XFF": request.headers.get("X-Forwarded-For", "")},
        )

    async def wait(request: web.Request) -> web.Response:
        # Blocks until the test opens the gate: a slow request without a fixed sleep.
        key = request.match_info["key"]
        holder["b"].began(key).set()
        await holder["b"].gate(key).wait()
        return web.Response(text=f"{name} done {key}", headers={"X-Backend": name})

    async def stream(request: web.Request) -> web.StreamResponse:
        # Chunked response: first chunk, then wait for the test to confirm it arrived, then the rest.
        size = int(request.query.get("size", "1048576"))
        resp = web.StreamResponse(headers={"X-Backend": name})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"first-chunk;")
        await holder["b"].gate("stream").wait()
        block = b"x" * 65536
        sent = 0
        while sent < size:
            part = block[: min(len(block), size - sent)]
            await resp.write(part)
            sent += len(part)
        await resp.write_eof()
        return resp

    async def echo(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        total = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            total += len(chunk)
        return web.json_response({"backend": name, "length": total, "sha256": digest.hexdigest(),
                                  "chunked": "chunked" in request.headers.get("Transfer-Encoding", "")})

    async def gated_echo(request: web.Request) -> web.Response:
        # Reads nothing until the test opens the gate: the router must stop reading the client.
        key = request.match_info["key"]
        holder["b"].began(key).set()
        await holder["b"].gate(key).wait()
        return await echo(request)

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == WSMsgType.TEXT and msg.data.startswith("big:"):  # one large binary frame
                await sock.send_bytes(b"z" * int(msg.data[4:]))
            elif msg.type == WSMsgType.TEXT and msg.data == "close-me":  # the app ends it itself
                await sock.close(code=4001, message=b"app says bye")
            elif msg.type == WSMsgType.TEXT:
                await sock.send_str(f"{name}:{msg.data}")
            elif msg.type == WSMsgType.BINARY:
                await sock.send_bytes(msg.data)
        return sock

    app.router.add_get("/", hello)
    app.router.add_get("/wait/{key}", wait)
    app.router.add_get("/stream", stream)
    app.router.add_post("/echo", echo)
    app.router.add_post("/gated-echo/{key}", gated_echo)
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    backend = LiveBackend(name, runner, port)
    holder["b"] = backend
    return backend


async def start_flaky_backend() -> tuple[asyncio.Server, int]:
    """A raw backend that answers the first request on each connection and then drops the connection
    as the next request arrives, without a byte: a pooled keep-alive connection that "turns out closed"
    when reused, deterministically."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Backend: flaky\r\n\r\nflaky")
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


class RawClient:
    """One TCP connection; sends raw request bytes and parses responses one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, address: str) -> RawClient:
        host, port = address.rsplit(":", 1)
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def response(self, head: bool = False, timeout: float = 10) -> RawResponse:
        done = asyncio.Event()
        status = 0
        headers: dict[str, str] = {}
        body = bytearray()
        keep: list[bool] = []

        class Proto:
            def on_header(self, name: bytes, value: bytes) -> None:
                headers[name.decode().lower()] = value.decode()

            def on_headers_complete(self) -> None:
                keep.append(parser.should_keep_alive())
                if head:
                    done.set()

            def on_body(self, data: bytes) -> None:
                body.extend(data)

            def on_message_complete(self) -> None:
                done.set()

        parser = httptools.HttpResponseParser(Proto())
        async with asyncio.timeout(timeout):
            while not done.is_set():
                data = await self.reader.read(65536)
                if not data:
                    if status == 0 and not headers:
                        raise ConnectionError("connection closed before a response")
                    break
                parser.feed_data(data)
                status = parser.get_status_code()
        return RawResponse(parser.get_status_code(), headers, bytes(body), bool(keep and keep[-1]))

    async def request(self, path: str = "/", method: str = "GET", extra: str = "",
                      version: str = "1.1") -> RawResponse:
        self.send(f"{method} {path} HTTP/{version}\r\nHost: test.local\r\n{extra}\r\n".encode())
        return await self.response(head=method == "HEAD")

    async def closed_by_peer(self, timeout: float = 5) -> bool:
        """True once the other side closed the connection (EOF), False if it stays open past timeout."""
        try:
            async with asyncio.timeout(timeout):
                data = await self.reader.read(1)
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2)


async def wait_for_condition(check: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll a cheap condition with a deadline (for state the router exposes only via stats())."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def scenario(**router_options: Any) -> Callable[[Scenario], Callable[[str], None]]:
    """Turn ``async def test_x(router, backends)`` into a test run on a fresh loop of each kind.

    Each run gets two live aiohttp backends and a started RouterServer on an ephemeral port, and
    everything is stopped afterwards, so scenarios never share state.
    """

    def wrap(fn: Scenario) -> Callable[[str], None]:
        def test(loop_kind: str) -> None:
            factory = None
            if loop_kind == "uvloop":
                import uvloop

                factory = uvloop.new_event_loop
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(asyncio.wait_for(_run(fn, router_options), 50))

        test.__name__ = fn.__name__
        test.__doc__ = fn.__doc__
        return test

    return wrap


async def _run(fn: Scenario, options: dict[str, Any]) -> None:
    backends = [await start_backend("a"), await start_backend("b")]
    router = RouterServer("api/stg", "127.0.0.1:0", **options)
    await router.start()
    try:
        await fn(router, backends)
    finally:
        await router.close()
        for b in backends:
            for gate in b.gates.values():
                gate.set()
            await b.stop()
