"""The nginx router against a real nginx on loopback with real backends: weights honoured by requests, the
generation read back from nginx's workers, a configuration nginx refuses leaving the old upstream serving,
a graceful reload under steady load losing no request, and drain waiting for an in-flight request."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from shipyard.demo.load import LoadRunner
from shipyard.errors import RouterError
from shipyard.routers.base import WeightedBackend
from shipyard.routers.nginx import LocalExecutor, NginxRouter
from shipyard.testing.nginx import Nginx, nginx_binary, nginx_process
from shipyard.testing.servers import missing_server

pytestmark = [pytest.mark.nginx, pytest.mark.timeout(120)]


@pytest.fixture
def ngx() -> Iterator[Nginx]:
    binary = nginx_binary()
    if binary is None:
        missing_server("nginx is missing (scripts/bootstrap installs it)")
    with nginx_process(binary) as running:
        yield running


def router(ngx: Nginx) -> NginxRouter:
    return NginxRouter(LocalExecutor(), upstream=ngx.upstream, file=ngx.upstream_file, conf=ngx.conf,
                       status=ngx.status, binary=nginx_binary() or "nginx", listen=ngx.listen, timeout=5.0)


@pytest.fixture
async def apps() -> AsyncIterator[list[tuple[str, asyncio.Event]]]:
    """Three backends answering their name; /slow waits for the test's gate."""
    runners, out = [], []
    for name in ("a", "b", "c"):
        gate = asyncio.Event()

        async def hello(request: web.Request, name: str = name) -> web.Response:
            return web.Response(text=name)

        async def slow(request: web.Request, gate: asyncio.Event = gate, name: str = name) -> web.Response:
            await gate.wait()
            return web.Response(text=name)

        app = web.Application()
        app.router.add_get("/", hello)
        app.router.add_get("/slow", slow)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        runners.append(runner)
        out.append((f"127.0.0.1:{port}", gate))
    yield out
    for _, gate in out:
        gate.set()
    for runner in runners:
        await runner.cleanup()


def wb(address: str, weight: int) -> WeightedBackend:
    return WeightedBackend(address, weight, "rev", f"i-{address.rsplit(':', 1)[1]}")


Apps = list[tuple[str, asyncio.Event]]


async def test_weights_are_served_and_read_back_from_the_workers(ngx: Nginx, apps: Apps) -> None:
    r = router(ngx)
    (a, _), (b, _), (c, _) = apps
    chosen = [wb(a, 300), wb(b, 100), wb(c, 0)]
    started = time.monotonic()
    await r.set_backends(chosen)
    took = time.monotonic() - started
    assert await r.verify(chosen) is True
    assert await r.verify([wb(a, 100), wb(b, 100)]) is False
    assert {(x.address, x.weight) for x in await r.backends()} == {(a, 300), (b, 100)}
    async with httpx.AsyncClient(base_url=ngx.url, timeout=5) as http:
        names = Counter([(await http.get("/")).text for _ in range(80)])
    assert set(names) == {"a", "b"} and 45 <= names["a"] <= 75, names   # 3:1 of 80, with slack
    assert took < 5.0


async def test_a_refused_configuration_keeps_the_old_upstream(ngx: Nginx, apps: Apps) -> None:
    r = router(ngx)
    (a, _), (b, _), _ = apps
    await r.set_backends([wb(a, 100)])
    good = Path(ngx.upstream_file).read_text()
    # Someone broke nginx.conf meanwhile: the check refuses, nginx is never reloaded onto it.
    conf = Path(ngx.conf)
    conf.write_text(conf.read_text().replace("worker_processes 1;", "worker_processes 1;\nbogus_directive on;"))
    with pytest.raises(RouterError, match=r"nginx -t refused the configuration \(previous upstream kept\): "
                                          r"\[emerg\] unknown directive \"bogus_directive\""):
        await r.set_backends([wb(b, 100)])
    assert Path(ngx.upstream_file).read_text() == good
    async with httpx.AsyncClient(base_url=ngx.url, timeout=5) as http:
        assert (await http.get("/")).text == "a"
    assert await r.verify([wb(a, 100)]) is True
    # Routing back to what serves (a rollback's step) is no change: no nginx -t to refuse, no reload.
    worker = (await r.stats())["worker_pid"]
    await r.set_backends([wb(a, 100)])
    assert (await r.stats())["worker_pid"] == worker


async def test_reloads_under_load_lose_no_request_and_drain_waits_for_in_flight(
        ngx: Nginx, apps: list[tuple[str, asyncio.Event]]) -> None:
    r = router(ngx)
    (a, gate_a), (b, _), (c, _) = apps
    await r.set_backends([wb(a, 100), wb(b, 100)])
    load = LoadRunner(f"{ngx.url}/", 50, timeout=5.0).start()
    try:
        for backends in ([wb(b, 100), wb(c, 100)], [wb(c, 100)], [wb(a, 100), wb(c, 100)], [wb(b, 100)]):
            await r.set_backends(backends)
            await asyncio.sleep(0.3)
    finally:
        result = await asyncio.to_thread(load.stop, 30)
    assert result.total >= 50 and result.failed == 0, f"{result.summary()}; {result.failures[:5]}"

    await r.set_backends([wb(a, 100)])
    async with httpx.AsyncClient(base_url=ngx.url, timeout=10) as http:
        pending = asyncio.create_task(http.get("/slow"))
        await asyncio.sleep(0.3)
        await r.set_backends([wb(b, 100)])               # a leaves; its worker still holds /slow
        assert await r.drain(a, 0.5) == 1                # the old worker is still shutting down
        gate_a.set()
        assert (await pending).text == "a"               # the in-flight request finished on a
        assert await r.drain(a, 10.0) == 0
