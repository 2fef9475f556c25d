"""Side by side: the built-in router and a real HAProxy in front of the same scripted backend.

Each proxy gets three fronts: ``main`` (the router's defaults; HAProxy configured to the same policy),
``fast`` (short timeouts, for the timeout rows) and ``retry`` (a dead port first in the backend set, for
connection-failure retries). A raw client speaks bytes on one socket, so a row sees exactly what a proxy
sends back: status, headers, body, whether the response ended properly, whether the connection stays
usable. Under CI=true a missing haproxy binary is a failure, never a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools

from shipyard.ipc import free_port
from shipyard.proxy import Backend, RouterOptions, RouterServer
from shipyard.testing.haproxy import haproxy_binary as find_haproxy
from shipyard.testing.processes import start_process, stop_process
from shipyard.testing.servers import missing_server

try:  # works whether or not tests/ is a package
    from .scripted_backend import ScriptedBackend
except ImportError:
    from scripted_backend import ScriptedBackend

FAST = 1.0  # seconds: the client-side timeouts of the ``fast`` fronts
SERVER = 2 * FAST  # their server (response) timeout: longer, so a stalled client meets its own timeout first
TRUSTED = "127.0.0.2"  # a client bound to this loopback address is a trusted proxy

# The router's policy written as HAProxy configuration: replace forwarding headers from untrusted peers,
# append for trusted ones; retry a request that never reached a server, retry one that got no response
# only when its method is idempotent; reuse idle server connections only after a session's first request.
HAPROXY_CFG = """
global
    maxconn 500
defaults
    mode http
    option http-keep-alive
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 30s
    timeout tunnel 1h
    retries 3
    retry-on conn-failure empty-response
    option redispatch
    http-reuse safe
frontend main
    bind 127.0.0.1:{main}
    default_backend app
frontend fast
    bind 127.0.0.1:{fast}
    timeout client {fast_ms}ms
    timeout http-request {fast_ms}ms
    timeout http-keep-alive {fast_ms}ms
    default_backend app_fast
frontend retry
    bind 127.0.0.1:{retry}
    default_backend app_retry
backend app
    {policy}
    server s1 127.0.0.1:{backend}
backend app_fast
    {policy}
    timeout server {server_ms}ms
    server s1 127.0.0.1:{backend}
backend app_retry
    {policy}
    balance first
    server dead 127.0.0.1:{dead}
    server s1 127.0.0.1:{backend}
"""
POLICY = """acl trusted src {trusted}
    acl idempotent method GET HEAD OPTIONS TRACE PUT DELETE
    http-request disable-l7-retry if !idempotent
    http-request del-header X-Forwarded-For if !trusted
    http-request del-header Forwarded if !trusted
    http-request del-header X-Real-IP if !trusted
    http-request set-header X-Forwarded-Proto http if !trusted || !{{ req.hdr(x-forwarded-proto) -m found }}
    http-request set-header X-Forwarded-Host %[req.hdr(host)] if !trusted || !{{ req.hdr(x-forwarded-host) -m found }}
    option forwardfor"""


def haproxy_binary() -> str:
    return find_haproxy() or missing_server("haproxy is missing (scripts/bootstrap installs it)")




@dataclass
class Front:
    """One proxy under test: its three front addresses and the shared scripted backend."""

    name: str
    main: str
    fast: str
    retry: str
    backend: ScriptedBackend
    routers: list[RouterServer] = field(default_factory=list)

    def path(self, kind: str, row: str) -> str:
        return f"/{kind}/{row}-{self.name}"


async def wait_listening(address: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    host, port = address.rsplit(":", 1)
    while True:
        try:
            _, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            if loop.time() > deadline:
                raise AssertionError(f"nothing listens on {address}") from None
            await asyncio.sleep(0.02)
            continue
        writer.close()
        return


@contextlib.asynccontextmanager
async def haproxy_front(tmp: Path, backend: ScriptedBackend, dead: int) -> AsyncIterator[Front]:
    binary = haproxy_binary()
    ports = {"main": free_port(), "fast": free_port(), "retry": free_port()}
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(**ports, backend=backend.port, dead=dead, fast_ms=int(FAST * 1000),
                                      server_ms=int(SERVER * 1000),
                                      policy=POLICY.format(trusted=TRUSTED)))
    proc = start_process([binary, "-db", "-f", str(cfg)], log=tmp / "haproxy.log")
    try:
        for port in ports.values():
            try:
                await wait_listening(f"127.0.0.1:{port}")
            except AssertionError:
                raise AssertionError((tmp / "haproxy.log").read_text()) from None
        yield Front("haproxy", *(f"127.0.0.1:{p}" for p in ports.values()), backend)
    finally:
        stop_process(proc, timeout=5)


@contextlib.asynccontextmanager
async def router_front(backend: ScriptedBackend, dead: int) -> AsyncIterator[Front]:
    base = {"trusted_proxies": [f"{TRUSTED}/32"]}
    fast = {**base, "request_timeout": FAST, "client_timeout": FAST, "keepalive_timeout": FAST,
            "response_timeout": SERVER}
    made: list[RouterServer] = []
    try:
        for opts, backends in (
            (base, [backend.address]),
            (fast, [backend.address]),
            (base, [f"127.0.0.1:{dead}", backend.address]),
        ):
            router = RouterServer.with_options("compare/test", "127.0.0.1:0", RouterOptions.from_mapping(opts))
            made.append(router)
            await router.start()
            router.set_backends([Backend(a, 1, "r1", f"i{i}") for i, a in enumerate(backends)])
        yield Front("router", *(r.listen for r in made), backend, made)
    finally:
        for router in made:
            await router.close()


@dataclass
class Resp:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    complete: bool  # the message ended where its framing said (not cut by a closed connection)

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name.lower()]
        return ", ".join(values) if values else None


class _Responses:
    """The response parser of one connection: responses complete in order, several may share a read."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: deque[Resp] = deque()
        self._next()

    def _next(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.head = False
        self.started = False

    def feed(self, data: bytes) -> bytes:
        """Parse ``data``; returns what follows a 101 response (the upgraded protocol's bytes)."""
        self.started = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if self.head:
                self.on_message_complete()
            return data[exc.args[0] :]
        return b""

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head:
            self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.head = True

    def on_body(self, data: bytes) -> None:
        self.body.extend(data)

    def on_message_complete(self) -> None:
        self.done.append(self.current(complete=True))
        self._next()

    def current(self, complete: bool) -> Resp:
        return Resp(self.parser.get_status_code(), self.headers, bytes(self.body), complete)


class Client:
    """One raw TCP connection to a front."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = b""  # bytes after a 101 response (websocket frames)
        self.parsed = _Responses()
        self.eof = False

    @classmethod
    async def connect(cls, address: str, source: str = "127.0.0.1") -> Client:
        host, port = address.rsplit(":", 1)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, int(port), local_addr=(source, 0)), 5)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def request(self, method: str, path: str, *headers: str, body: bytes = b"",
                      version: str = "1.1") -> Resp | None:
        self.send(raw_request(method, path, *headers, body=body, version=version))
        return await self.response(head=method == "HEAD")

    async def response(self, head: bool = False, timeout: float = 8.0) -> Resp | None:
        """The next response; None when the connection closed before any byte of it."""
        p = self.parsed
        async with asyncio.timeout(timeout):
            while not p.done:
                if head and p.head:  # a HEAD response has no body, whatever its headers announce
                    self.parsed = _Responses()
                    return p.current(complete=True)
                try:
                    data = await self.reader.read(65536)
                except ConnectionError:
                    data = b""
                if not data:
                    if self.eof or not p.started or (not p.headers and not p.head):
                        return None
                    self.eof = True  # the connection is over: later calls get None
                    # The end of a body delimited by the connection closing (no length, not chunked).
                    framed = any(k in ("content-length", "transfer-encoding") for k, _ in p.headers)
                    return p.current(complete=p.head and not framed)
                self.buffer += p.feed(data)
        return p.done.popleft()

    async def still_usable(self, front: Front, row: str) -> bool:
        """Does a follow-up request on this connection get its answer? (The connection stayed open.)"""
        try:
            resp = await self.request("GET", front.path("ok", row + "-followup"))
        except (ConnectionError, TimeoutError):
            return False
        return resp is not None and resp.status == 200 and resp.complete

    async def closed(self, timeout: float = 8.0) -> bool:
        """True once the proxy closed the connection (EOF or reset) within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    def shutdown_write(self) -> None:
        sock = self.writer.get_extra_info("socket")
        sock.shutdown(socket.SHUT_WR)

    def reset(self) -> None:
        """Close with RST (SO_LINGER 0): the abrupt way a client vanishes."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2)


def raw_request(method: str, path: str, *headers: str, body: bytes = b"", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: test.local", *headers]
    if body and not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def view(resp: Resp | None, *names: str) -> dict[str, Any]:
    """What a row compares of one response: status, body, completeness and the named headers."""
    if resp is None:
        return {"status": None}
    out: dict[str, Any] = {"status": resp.status, "complete": resp.complete}
    if resp.status < 400:  # the proxies word their own error pages differently
        out["body"] = resp.body
    for name in names:
        out[name.lower()] = resp.header(name)
    return out
