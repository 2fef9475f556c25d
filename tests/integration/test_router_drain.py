"""Drain and departures against real sockets: websockets closed with 1001 (never 1006), long requests
on the long budget, clients that leave mid-request, requests that must not be sent twice."""

from __future__ import annotations

import array
import asyncio
import base64
import fcntl
import os
import socket
import struct
import termios

import aiohttp
import httpx
import pytest

from shipyard.proxy import Backend, RouterServer
from shipyard.proxy.tunnel import TO_CLIENT

try:  # works whether or not tests/ is a package
    from .router_helpers import LiveBackend, RawClient, scenario, wait_for_condition
    from .scripted_backend import ScriptedBackend, ws_decode, ws_frame
except ImportError:
    from router_helpers import LiveBackend, RawClient, scenario, wait_for_condition
    from scripted_backend import ScriptedBackend, ws_decode, ws_frame

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    return str(request.param)


def route(router: RouterServer, *pairs: tuple[LiveBackend | ScriptedBackend, int]) -> None:
    router.set_backends([Backend(b.address, w, revision=f"rev-{b.address}", instance=b.address) for b, w in pairs])


class RawWebsocket:
    """A websocket client on a raw socket: frames as they are on the wire."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.buffer = reader, writer, b""

    @classmethod
    async def open(cls, address: str, path: str = "/ws") -> RawWebsocket:
        host, port = address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send_text(self, text: str) -> None:
        self.writer.write(ws_frame(1, text.encode(), mask=os.urandom(4)))

    async def frame(self, timeout: float = 10) -> tuple[int, bytes]:
        async with asyncio.timeout(timeout):
            while (found := ws_decode(self.buffer)) is None:
                data = await self.reader.read(1 << 20)
                if not data:
                    raise ConnectionError("closed without a close frame (the client would report 1006)")
                self.buffer += data
        self.buffer = self.buffer[found[2] :]
        return found[0], found[1]


@scenario()
async def test_drain_ends_websockets_with_going_away(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, b = backends
    route(router, (a, 1))
    async with aiohttp.ClientSession() as session, session.ws_connect(f"http://{router.listen}/ws") as ws:
        await ws.send_str("x")
        assert (await ws.receive(timeout=5)).data == "a:x"
        route(router, (a, 0), (b, 1))
        report = await router.drain(a.address, timeout=5, ws_timeout=0.4)
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001, msg  # not 1006 (abnormal closure)
    assert (report.remaining, report.ws_closed, report.ws_cut) == (0, 1, 0)
    assert report.as_dict() == {"remaining": 0, "http_left": 0, "ws_closed": 1, "ws_cut": 0}


@scenario()
async def test_a_retiring_router_ends_its_websockets_with_going_away(router: RouterServer,
                                                                     backends: list[LiveBackend]) -> None:
    """A handover: the old router process stops accepting and finishes; a websocket cannot follow it to
    the new process, so it ends with a close frame (the client reconnects), never a bare cut (1006)."""
    a, _ = backends
    route(router, (a, 1))
    async with aiohttp.ClientSession() as session, session.ws_connect(f"http://{router.listen}/ws") as ws:
        await ws.send_str("x")
        assert (await ws.receive(timeout=5)).data == "a:x"
        router.stop_accepting()
        finish = asyncio.create_task(router.finish(0.8))
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001, msg
        cut = await asyncio.wait_for(finish, 5)
    assert cut == 0  # the client got its close frame: closed, not cut


@scenario()
async def test_a_retiring_router_serves_requests_clients_are_sending(router: RouterServer,
                                                                     backends: list[LiveBackend]) -> None:
    """A connection accepted just before a handover, whose request is on its way (not sent yet, or half
    sent), is served and then closed: closing it as idle would fail a request the client is sending.
    A connection idle after a response is closed at once (the client opens its next one elsewhere)."""
    a, _ = backends
    route(router, (a, 1))
    fresh, partial, used = [await RawClient.connect(router.listen) for _ in range(3)]
    used.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await used.response()).status == 200
    partial.send(b"GET / HTTP/1.1\r\nHo")
    await wait_for_condition(lambda: len(router.clients) == 3 and any(c.rx and not c.served for c in router.clients),
                             what="three connections, one with half a head")
    router.stop_accepting()
    finish = asyncio.create_task(router.finish(5))
    await wait_for_condition(lambda: len(router.clients) == 2, what="the idle keep-alive connection closed")
    assert await used.reader.read() == b""
    fresh.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    partial.send(b"st: t\r\n\r\n")
    for client in (fresh, partial):
        resp = await client.response()
        assert (resp.status, resp.body, resp.keep_alive) == (200, b"a", False)   # served, then closed
        assert await client.reader.read() == b""
    assert await asyncio.wait_for(finish, 5) == 0


@scenario()
async def test_a_retiring_router_keeps_a_connection_whose_request_waits_unread(router: RouterServer,
                                                                               backends: list[LiveBackend]) -> None:
    """A busy loop may not have read a request the kernel already holds: the connection looks idle, but
    closing it would reset that request (RST for unread bytes). It is answered, then closed."""
    a, _ = backends
    route(router, (a, 1))
    used = await RawClient.connect(router.listen)
    used.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await used.response()).status == 200
    (conn,) = router.clients
    conn.transport.pause_reading()  # the loop "is busy": what arrives stays in the kernel
    used.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    sock = conn.transport.get_extra_info("socket")
    await wait_for_condition(lambda: _unread(sock.fileno()) > 0, what="the request in the kernel's buffer")
    router.stop_accepting()
    finish = asyncio.create_task(router.finish(5))
    await wait_for_condition(lambda: not router.keepalive, what="the retiring router's first pass")
    assert conn in router.clients and not conn.closing
    conn.transport.resume_reading()
    resp = await used.response()
    assert (resp.status, resp.body, resp.keep_alive) == (200, b"a", False)
    assert await used.reader.read() == b""
    assert await asyncio.wait_for(finish, 5) == 0


def _unread(fd: int) -> int:
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return buf[0]


async def test_close_frame_waits_for_the_frame_in_flight() -> None:
    backend = await ScriptedBackend().start()
    router = RouterServer("api/stg", "127.0.0.1:0")
    await router.start()
    try:
        route(router, (backend, 1))
        ws = await RawWebsocket.open(router.listen, "/ws/half")
        ws.send_text("half")  # the backend sends half a frame, the rest only when the test says so
        router.set_backends([])
        drain = asyncio.create_task(router.drain(backend.address, timeout=1, ws_timeout=4))
        await wait_for_condition(lambda: bool(router.states[backend.address].tunnels), what="the tunnel")
        (tunnel,) = router.states[backend.address].tunnels
        await wait_for_condition(lambda: bool(tunnel.pending & TO_CLIENT), timeout=10,  # type: ignore[attr-defined]
                                 what="the close frame to be due mid-frame")
        backend.gate("ws-rest").set()
        assert await ws.frame() == (2, b"z" * 1000)  # the frame in flight arrives whole ...
        opcode, payload = await ws.frame()
        assert (opcode, struct.unpack("!H", payload[:2])[0]) == (8, 1001)  # ... then the router's close frame
        ws.writer.write(ws_frame(8, payload[:2], mask=os.urandom(4)))  # the client answers it
        report = await asyncio.wait_for(drain, 10)
        assert (report.ws_closed, report.ws_cut, report.remaining) == (1, 0, 0)
        assert (8, b"\x03\xe9router draining") in backend.ws_received  # the backend got a masked close too
        ws.writer.close()
    finally:
        await router.close()
        await backend.stop()


@scenario()
async def test_app_closing_its_websocket_counts_as_closed(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, b = backends
    route(router, (a, 1))
    async with aiohttp.ClientSession() as session, session.ws_connect(f"http://{router.listen}/ws") as ws:
        route(router, (a, 0), (b, 1))
        drain = asyncio.create_task(router.drain(a.address, timeout=5, ws_timeout=10))
        await ws.send_str("close-me")
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4001  # the app's own code passes through
        report = await asyncio.wait_for(drain, 5)
    assert (report.ws_closed, report.ws_cut) == (1, 0)


async def test_other_upgrades_are_cut_and_counted() -> None:
    backend = await ScriptedBackend().start()
    router = RouterServer("api/stg", "127.0.0.1:0")
    await router.start()
    try:
        route(router, (backend, 1))
        host, port = router.listen.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /upgrade/x HTTP/1.1\r\nHost: t\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nping")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101") and await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
        router.set_backends([])
        report = await router.drain(backend.address, timeout=1, ws_timeout=0.2)
        assert (report.ws_cut, report.remaining) == (1, 1)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        await router.close()
        await backend.stop()


@scenario()
async def test_long_requests_get_the_long_budget(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, b = backends
    route(router, (a, 1))
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=10) as client:
        slow = asyncio.create_task(client.get(f"http://{router.listen}/wait/long"))
        await asyncio.wait_for(a.began("long").wait(), 5)
        route(router, (b, 1))
        t0 = loop.time()
        drain = asyncio.create_task(router.drain(a.address, timeout=0.2, ws_timeout=5))
        await wait_for_condition(lambda: loop.time() - t0 > 0.5, what="the HTTP budget (0.2 s) to pass")
        assert not drain.done()  # still in flight past drain_timeout: a long request, on ws_drain_timeout
        a.gate("long").set()
        report = await asyncio.wait_for(drain, 5)
        assert (await slow).text == "a done long"
    assert report.remaining == 0 and report.http_left == 0


# -- clients that leave, requests that must not be sent twice -----------------------------------------
async def two_scripted() -> tuple[RouterServer, ScriptedBackend, ScriptedBackend]:
    old, new = await ScriptedBackend().start(), await ScriptedBackend().start()
    router = RouterServer("api/stg", "127.0.0.1:0")
    await router.start()
    return router, old, new


@pytest.mark.parametrize("how", ["half-close", "reset"])
async def test_client_leaving_mid_request_ends_the_exchange(how: str) -> None:
    router, old, new = await two_scripted()
    try:
        route(router, (old, 1))
        host, port = router.listen.rsplit(":", 1)
        _reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /body-wait/pay HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly ten..")
        await wait_for_condition(lambda: old.count("/body-wait/pay") == 1, what="the request at the backend")
        sock = writer.get_extra_info("socket")
        if how == "half-close":
            sock.shutdown(socket.SHUT_WR)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        state = router.states[old.address]
        await wait_for_condition(lambda: state.in_flight == 0, what="the request to stop counting as in flight")
        conn = old.conns[old.requests("/body-wait/pay")[0].conn]
        await asyncio.wait_for(conn.closed.wait(), 5)  # the backend connection was closed at once
        route(router, (new, 1))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert (await router.drain(old.address, timeout=20)).remaining == 0
        assert loop.time() - t0 < 5  # nothing for the drain to wait for
        await old.stop()
        assert new.seen == []  # never sent again, to the next revision or anywhere
        writer.close()
    finally:
        await router.close()
        await old.stop()
        await new.stop()


async def test_post_is_sent_once_get_is_retried() -> None:
    router, one, two = await two_scripted()
    try:
        route(router, (one, 1), (two, 1))  # both read the request, then die without a byte
        async with httpx.AsyncClient() as client:
            post = await client.post(f"http://{router.listen}/close/pay", content=b"once")
        async with httpx.AsyncClient() as client:  # a first request: after the retries, a 502
            get = await client.get(f"http://{router.listen}/close/read")
        assert post.status_code == 502 and one.count("/close/pay") + two.count("/close/pay") == 1
        assert get.status_code == 502 and one.count("/close/read") + two.count("/close/read") == 4  # 1 + retries
        stats = router.stats()["per_backend"]
        assert sum(c["retries"] for c in stats.values()) == 3
    finally:
        await router.close()
        await one.stop()
        await two.stop()


async def test_response_timeout_is_not_retried_by_default() -> None:
    router, one, two = await two_scripted()
    router.apply_options(router.options.__class__(response_timeout=0.3))
    try:
        route(router, (one, 1), (two, 1))
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.get(f"http://{router.listen}/hang/t")
        assert resp.status_code == 504 and one.count("/hang/t") + two.count("/hang/t") == 1
        router.apply_options(router.options.__class__(response_timeout=0.3, retry_on=("response-timeout",)))
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.get(f"http://{router.listen}/hang/u")
        assert resp.status_code == 504 and one.count("/hang/u") + two.count("/hang/u") == 4
    finally:
        await router.close()
        await one.stop()
        await two.stop()
