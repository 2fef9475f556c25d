"""The built-in router against real aiohttp backends over real 127.0.0.1 sockets."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest

from shipyard.proxy import Backend, RouterServer, render_prometheus

try:  # works whether or not tests/ is a package
    from .router_helpers import LiveBackend, RawClient, scenario, start_flaky_backend, wait_for_condition
except ImportError:
    from router_helpers import (
        LiveBackend,
        RawClient,
        scenario,
        start_flaky_backend,
        wait_for_condition,
    )

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    """Every scenario runs on both loops: the agent installs uvloop, a bare install uses asyncio."""
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    return str(request.param)


def url(router: RouterServer, path: str = "/") -> str:
    return f"http://{router.listen}{path}"


def route(router: RouterServer, *pairs: tuple[LiveBackend, int]) -> None:
    router.set_backends(
        [Backend(b.address, w, revision=f"rev-{b.name}", instance=f"i-{b.name}") for b, w in pairs]
    )


@scenario()
async def test_weighted_split_per_request(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, b = backends
    route(router, (a, 0), (b, 100))
    async with httpx.AsyncClient() as client:  # one keep-alive connection: routing is per request
        seen = Counter([(await client.get(url(router))).text for _ in range(40)])
        assert seen == {"b": 40}
        route(router, (a, 20), (b, 80))
        seen = Counter([(await client.get(url(router))).text for _ in range(300)])
    assert 45 <= seen["a"] <= 75, seen
    assert seen["a"] + seen["b"] == 300


@scenario()
async def test_keep_alive_both_sides(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, _ = backends
    route(router, (a, 1))
    raw = await RawClient.connect(router.listen)
    ports = set()
    for _ in range(5):
        resp = await raw.request("/")
        assert resp.status == 200 and resp.body == b"a" and resp.keep_alive
        ports.add(resp.headers["x-peer-port"])
    assert len(ports) == 1, "upstream connection was not reused"
    assert resp.headers["x-seen-host"] == "test.local"
    assert resp.headers["x-seen-xff"] == "127.0.0.1"
    # A second client connection reuses the same pooled upstream connection.
    other = await RawClient.connect(router.listen)
    assert (await other.request("/")).headers["x-peer-port"] in ports
    head = await raw.request("/", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert (await raw.request("/")).body == b"a"  # still in sync after a HEAD
    assert not await raw.closed_by_peer(timeout=0.2)
    await raw.close()
    await other.close()


@scenario()
async def test_pipelined_requests_answered_in_order(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, b = backends
    route(router, (a, 1), (b, 1))
    raw = await RawClient.connect(router.listen)
    raw.send(b"GET /wait/p1 HTTP/1.1\r\nHost: t\r\n\r\n" * 1 + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 3)
    await asyncio.wait_for(a.began("p1").wait(), 5)  # the first request goes to a and blocks there
    a.gate("p1").set()
    first = await raw.response()
    assert first.body == b"a done p1"
    assert [(await raw.response()).body for _ in range(3)] == [b"b", b"a", b"b"]
    await raw.close()


@scenario()
async def test_http10_and_connection_close(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, _ = backends
    route(router, (a, 1))
    raw = await RawClient.connect(router.listen)
    resp = await raw.request("/", version="1.0")
    assert resp.status == 200 and resp.body == b"a"
    assert await raw.closed_by_peer()
    raw = await RawClient.connect(router.listen)
    resp = await raw.request("/", extra="Connection: close\r\n")
    assert resp.status == 200 and resp.body == b"a"
    assert await raw.closed_by_peer()
    raw = await RawClient.connect(router.listen)  # HTTP/1.0 keep-alive is honoured too
    resp = await raw.request("/", version="1.0", extra="Connection: keep-alive\r\n")
    assert resp.status == 200
    assert (await raw.request("/", version="1.0", extra="Connection: keep-alive\r\n")).body == b"a"
    await raw.close()


@scenario()
async def test_malformed_and_oversized_requests_get_400(router: RouterServer, backends: list[LiveBackend]) -> None:
    route(router, (backends[0], 1))
    raw = await RawClient.connect(router.listen)
    raw.send(b"THIS IS NOT HTTP\r\n\r\n")
    assert (await raw.response()).status == 400
    assert await raw.closed_by_peer()
    raw = await RawClient.connect(router.listen)
    assert (await raw.request("/", extra="X-Big: " + "x" * 70_000 + "\r\n")).status == 400
    assert await raw.closed_by_peer()


@scenario()
async def test_chunked_response_streams(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, _ = backends
    route(router, (a, 1))
    size = 4 * 1024 * 1024
    async with httpx.AsyncClient() as client, client.stream("GET", url(router, f"/stream?size={size}")) as r:
        assert r.status_code == 200
        assert r.headers["transfer-encoding"] == "chunked"
        chunks = r.aiter_raw()
        first = await asyncio.wait_for(chunks.__anext__(), 5)  # arrives before the backend finishes
        assert first.startswith(b"first-chunk;")
        a.gate("stream").set()
        total = len(first)
        async for part in chunks:
            total += len(part)
    assert total == len(b"first-chunk;") + size


@scenario()
async def test_large_post_bodies(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, _ = backends
    route(router, (a, 1))
    body = bytes(range(256)) * (5 * 4096)  # 5 MiB
    digest = hashlib.sha256(body).hexdigest()

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 300_000):
            yield body[i : i + 300_000]

    async with httpx.AsyncClient(timeout=20) as client:
        r = await client.post(url(router, "/echo"), content=body)
        assert r.json() == {"backend": "a", "length": len(body), "sha256": digest, "chunked": False}
        r = await client.post(url(router, "/echo"), content=pieces())  # chunked upload
        assert r.json() == {"backend": "a", "length": len(body), "sha256": digest, "chunked": True}
        r = await client.post(url(router, "/echo"), content=b"small")
        assert r.json()["length"] == 5


@scenario()
async def test_websocket_echo_and_tunnel_count(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, _ = backends
    route(router, (a, 1))
    async with aiohttp.ClientSession() as session, session.ws_connect(url(router, "/ws")) as ws:
        await ws.send_str("hi")
        assert (await ws.receive(timeout=5)).data == "a:hi"
        await ws.send_bytes(b"\x00" * 200_000)
        assert (await ws.receive(timeout=5)).data == b"\x00" * 200_000
        assert router.stats()["backends"][0]["open_tunnels"] == 1
    await wait_for_condition(lambda: router.stats()["backends"][0]["open_tunnels"] == 0, what="tunnel closed")
    assert router.stats()["per_backend"][a.address]["1xx"] == 1


@scenario()
async def test_drain_waits_for_in_flight_request(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, b = backends
    route(router, (a, 1))
    async with httpx.AsyncClient(timeout=10) as client:
        slow = asyncio.create_task(client.get(url(router, "/wait/slow")))
        await asyncio.wait_for(a.began("slow").wait(), 5)
        route(router, (b, 1))
        assert router.stats()["retired"][0]["in_flight"] == 1
        drain = asyncio.create_task(router.drain(a.address, timeout=10))
        other = await client.get(url(router))  # new requests already go to b
        assert other.text == "b"
        assert not drain.done()
        a.gate("slow").set()
        assert (await asyncio.wait_for(drain, 10)).remaining == 0
        resp = await slow
    assert resp.status_code == 200 and resp.text == "a done slow"
    assert not router.states[a.address].idle  # pooled connections to a were closed


@scenario()
async def test_drain_websocket_budget(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, b = backends
    route(router, (a, 1))
    async with aiohttp.ClientSession() as session, session.ws_connect(url(router, "/ws")) as ws:
        await ws.send_str("x")
        assert (await ws.receive(timeout=5)).data == "a:x"
        route(router, (a, 0), (b, 1))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        report = await router.drain(a.address, timeout=5, ws_timeout=0.3)
        assert (report.remaining, report.ws_closed, report.ws_cut) == (0, 1, 0)  # closed with 1001, not cut
        assert loop.time() - t0 < 4  # the tunnel had its own, shorter budget
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    with pytest.raises(ValueError):
        await router.drain(b.address, timeout=1)  # still routable: refuse


@scenario()
async def test_killed_backend_is_retried(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, b = backends
    route(router, (a, 1), (b, 1))
    async with httpx.AsyncClient() as client:
        warm = Counter([(await client.get(url(router))).text for _ in range(10)])
        assert warm == {"a": 5, "b": 5}  # both have pooled upstream connections now
        await a.stop()  # dies while still in the set: pooled connections break, then refused
        results = await asyncio.gather(*(client.get(url(router)) for _ in range(60)))
        assert [r.status_code for r in results] == [200] * 60
        assert {r.text for r in results} == {"b"}
    per = router.stats()["per_backend"]
    assert per[a.address]["errors"] + per[a.address]["retries"] > 0


@scenario()
async def test_stale_pooled_connection_is_retried(router: RouterServer, backends: list[LiveBackend]) -> None:
    server, port = await start_flaky_backend()
    try:
        router.set_backends([Backend(f"127.0.0.1:{port}", 1, "r1", "flaky-1")])
        async with httpx.AsyncClient() as client:
            for _ in range(4):  # every second request meets a pooled connection that dies unanswered
                r = await client.get(url(router))
                assert r.status_code == 200 and r.text == "flaky"
        counters = router.stats()["per_backend"][f"127.0.0.1:{port}"]
        assert counters["retries"] >= 1 and counters["errors"] == 0 and counters["5xx"] == 0
    finally:
        server.close()


@scenario()
async def test_slow_client_pauses_backend(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, _ = backends
    route(router, (a, 1))
    size = 32 * 1024 * 1024
    raw = await RawClient.connect(router.listen)
    raw.send(f"GET /stream?size={size} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    first = await asyncio.wait_for(raw.reader.readuntil(b"first-chunk;"), 5)
    a.gate("stream").set()  # the backend now sends 32 MiB as fast as it can; the client reads nothing

    def backend_paused() -> bool:
        return any(c.reading_paused for c in router.states[a.address].busy)

    await wait_for_condition(backend_paused, timeout=10, what="router to stop reading the backend")
    buffered = max(c.transport.get_write_buffer_size() for c in router.clients)
    assert buffered < 1024 * 1024, buffered  # bounded by flow control, not by the response size
    received = len(first)
    tail = b""
    async with asyncio.timeout(30):
        while not tail.endswith(b"\r\n0\r\n\r\n"):
            data = await raw.reader.read(1 << 20)
            assert data, "connection closed before the end of the response"
            received += len(data)
            tail = (tail + data)[-16:]
    assert received > size  # every byte arrived, plus the chunk framing
    await raw.close()


@scenario()
async def test_slow_backend_pauses_client_upload(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, _ = backends
    route(router, (a, 1))
    size = 32 * 1024 * 1024
    raw = await RawClient.connect(router.listen)
    raw.send(f"POST /gated-echo/up HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n".encode())
    block = b"u" * (1 << 20)

    async def upload() -> None:
        for _ in range(size // len(block)):
            raw.send(block)
            await raw.writer.drain()

    sender = asyncio.create_task(upload())
    await asyncio.wait_for(a.began("up").wait(), 5)
    await wait_for_condition(lambda: any(c.paused for c in router.clients), timeout=10,
                             what="router to stop reading the client")
    assert not sender.done()  # the client is held back instead of the router buffering 32 MiB
    a.gate("up").set()
    await asyncio.wait_for(sender, 30)
    resp = await raw.response(timeout=30)
    assert resp.status == 200 and b'"length": %d' % size in resp.body
    await raw.close()


@scenario()
async def test_all_backends_down_gives_502(router: RouterServer, backends: list[LiveBackend]) -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there: connection refused
    router.set_backends([Backend(f"127.0.0.1:{port}", 1, "r1", "i1")])
    async with httpx.AsyncClient() as client:
        r = await client.get(url(router))
    assert r.status_code == 502
    counters = router.stats()["per_backend"][f"127.0.0.1:{port}"]
    assert counters["5xx"] == 1 and counters["errors"] >= 1


@scenario()
async def test_no_backend_is_503(router: RouterServer, backends: list[LiveBackend]) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.get(url(router))).status_code == 503
        route(router, (backends[0], 0))
        assert (await client.get(url(router))).status_code == 503
    assert router.stats()["unrouted"] == 2


@scenario(response_timeout=0.3)
async def test_response_timeout_is_504(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, _ = backends
    route(router, (a, 1))
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.get(url(router, "/wait/never"))
        assert resp.status_code == 504
        assert (await client.get(url(router))).status_code == 200
    assert router.stats()["per_backend"][a.address]["errors"] == 1


@scenario(keepalive_timeout=0.3, pool_idle_timeout=0.3)
async def test_idle_connections_are_closed(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, _ = backends
    route(router, (a, 1))
    raw = await RawClient.connect(router.listen)
    assert (await raw.request("/")).status == 200
    assert await raw.closed_by_peer(timeout=5)  # idle keep-alive client closed by the router
    await wait_for_condition(lambda: not router.states[a.address].idle, what="pooled connection closed")


@scenario()
async def test_stats_and_prometheus(router: RouterServer, backends: list[LiveBackend]) -> None:
    a, b = backends
    route(router, (a, 1), (b, 3))
    async with httpx.AsyncClient() as client:
        for _ in range(8):
            assert (await client.get(url(router))).status_code == 200
        assert (await client.get(url(router, "/missing"))).status_code == 404
    stats = router.stats()
    assert stats["name"] == "api/stg" and stats["listen"] == router.listen
    assert [(x["address"], x["weight"], x["revision"], x["instance"]) for x in stats["backends"]] == [
        (a.address, 1, "rev-a", "i-a"), (b.address, 3, "rev-b", "i-b")]
    rev_b = stats["per_revision"]["rev-b"]
    assert stats["per_revision"]["rev-a"]["requests"] + rev_b["requests"] == 9
    assert rev_b["requests"] >= 6 and rev_b["latency_count"] == rev_b["requests"]
    total_4xx = stats["per_revision"]["rev-a"]["4xx"] + rev_b["4xx"]
    assert total_4xx == 1
    assert rev_b["latency_buckets"]["+Inf"] == rev_b["requests"]
    assert list(rev_b["latency_buckets"])[:3] == ["0.001", "0.0025", "0.005"]
    assert stats["per_backend"][b.address]["2xx"] == rev_b["2xx"]
    text = render_prometheus([router])
    labels = f'service_env="api/stg",backend="{b.address}",revision="rev-b"'
    assert f"shipyard_router_requests_total{{{labels}}} {rev_b['requests']}" in text
    assert f'shipyard_router_request_duration_seconds_bucket{{{labels},le="+Inf"}}' in text
    assert "# TYPE shipyard_router_request_duration_seconds histogram" in text


@scenario()
async def test_port_in_use_raises(router: RouterServer, backends: list[LiveBackend]) -> None:
    other = RouterServer("api/prod", router.listen)
    with pytest.raises(OSError):
        await other.start()
