"""Timeouts blame the side that is slow: a backend the router holds back (because the client reads slowly)
is not timed out, nor a client the router holds back (because the backend reads slowly); a client that
stops reading is cut after client_timeout. (The HAProxy comparison covers the plain timeout rows.)"""

from __future__ import annotations

import asyncio

import pytest

from shipyard.proxy import Backend, RouterServer

try:  # works whether or not tests/ is a package
    from .router_helpers import LiveBackend, RawClient, scenario, wait_for_condition
except ImportError:
    from router_helpers import LiveBackend, RawClient, scenario, wait_for_condition

pytestmark = pytest.mark.timeout(60)
SIZE = 32 * 1024 * 1024


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    return str(request.param)


def route(router: RouterServer, backend: LiveBackend) -> None:
    router.set_backends([Backend(backend.address, 1, "r1", "i1")])


async def time_passes(seconds: float) -> None:
    """Wait until ``seconds`` of loop time went by (the condition some timeout rows are about)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    await wait_for_condition(lambda: loop.time() >= end, timeout=seconds + 5, what=f"{seconds} s to pass")


def backend_paused(router: RouterServer, backend: LiveBackend) -> bool:
    return any(c.reading_paused for c in router.states[backend.address].busy)


@scenario(response_timeout=0.5)
async def test_response_timeout_spares_a_backend_held_back(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, _ = backends
    route(router, a)
    raw = await RawClient.connect(router.listen)
    raw.send(f"GET /stream?size={SIZE} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    received = len(await asyncio.wait_for(raw.reader.readuntil(b"first-chunk;"), 5))
    a.gate("stream").set()
    await wait_for_condition(lambda: backend_paused(router, a), timeout=10, what="the backend held back")
    await time_passes(1.5)  # three response timeouts while the backend is silent because of the client
    tail = b""
    async with asyncio.timeout(30):
        while not tail.endswith(b"\r\n0\r\n\r\n"):
            data = await raw.reader.read(1 << 20)
            assert data, "the response was cut"
            received += len(data)
            tail = (tail + data)[-16:]
    assert received > SIZE
    await raw.close()


@scenario(client_timeout=0.5)
async def test_client_timeout_spares_a_client_held_back(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, _ = backends
    route(router, a)
    raw = await RawClient.connect(router.listen)
    raw.send(f"POST /gated-echo/up HTTP/1.1\r\nHost: t\r\nContent-Length: {SIZE}\r\n\r\n".encode())
    block = b"u" * (1 << 20)

    async def upload() -> None:
        for _ in range(SIZE // len(block)):
            raw.send(block)
            await raw.writer.drain()

    sender = asyncio.create_task(upload())
    await asyncio.wait_for(a.began("up").wait(), 5)
    await wait_for_condition(lambda: any(c.paused for c in router.clients), timeout=10,
                             what="the router to hold the client back")
    await time_passes(1.5)  # the client is silent only because the router stopped reading it
    a.gate("up").set()
    await asyncio.wait_for(sender, 30)
    resp = await raw.response(timeout=30)
    assert resp.status == 200 and b'"length": %d' % SIZE in resp.body
    await raw.close()


@scenario(client_timeout=0.5)
async def test_a_client_that_stops_reading_is_cut(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, _ = backends
    route(router, a)
    raw = await RawClient.connect(router.listen)
    raw.send(f"GET /stream?size={SIZE} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    await asyncio.wait_for(raw.reader.readuntil(b"first-chunk;"), 5)
    a.gate("stream").set()
    await wait_for_condition(lambda: backend_paused(router, a), timeout=10, what="the backend held back")
    state = router.states[a.address]
    await wait_for_condition(lambda: not router.clients and state.in_flight == 0 and not state.busy, timeout=10,
                             what="the stuck client to be cut, with its backend connection")
    await raw.close()
