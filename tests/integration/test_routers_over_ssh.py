"""Routers on another host, driven over SSH: a real nginx and a real HAProxy inside a namespaced test host
(their files and sockets in its private /srv, which this machine cannot see), backends on this machine's
bridge address. shipyard reaches them only through the SSH pool: nginx's file write, `nginx -t`, reload and
ps as argv, its status server through a direct-tcpip channel; HAProxy's stats socket through a streamlocal
channel. Traffic sent to the host's front really splits by the weights set; nginx refusing a configuration
there keeps the old upstream; a host whose network is cut is a RouterError naming it within the timeout."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from nethosts import HostFactory, TestHost
from nethosts import ssh_pool as nethost_pool
from shipyard.errors import RouterError
from shipyard.routers.base import WeightedBackend
from shipyard.routers.haproxy import HaproxyRouter, SshUnixChannel
from shipyard.routers.nginx import NginxRouter, SshExecutor
from shipyard.ssh import SshPool
from shipyard.testing.haproxy import haproxy_binary, haproxy_on_host
from shipyard.testing.nginx import Nginx, nginx_binary, nginx_on_host
from shipyard.testing.servers import missing_server

pytestmark = [pytest.mark.nethosts, pytest.mark.timeout(180)]

TIMEOUT = 3.0          # the router's bound on one command; a cut host must fail within it (plus slack)


@pytest.fixture
def lb(nethosts: HostFactory) -> TestHost:
    return nethosts.add("lb-1")


def ssh_pool(host: TestHost, tmp_path: Path) -> SshPool:
    return nethost_pool(host, tmp_path / "known_hosts", connect_timeout=TIMEOUT)


@pytest.fixture
async def pool(lb: TestHost, tmp_path: Path) -> AsyncIterator[SshPool]:
    async with ssh_pool(lb, tmp_path) as p:
        yield p


Apps = list[tuple[str, asyncio.Event]]


@pytest.fixture
async def apps(nethosts: HostFactory) -> AsyncIterator[Apps]:
    """Three backends on the bridge address (the host reaches this machine there) answering their name;
    /slow waits for the test's gate."""
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
        site = web.TCPSite(runner, nethosts.bridge_address, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        runners.append(runner)
        out.append((f"{nethosts.bridge_address}:{port}", gate))
    yield out
    for _, gate in out:
        gate.set()
    for runner in runners:
        await runner.cleanup()


def wb(address: str, weight: int) -> WeightedBackend:
    return WeightedBackend(address, weight, "rev", f"i-{address.rsplit(':', 1)[1]}")


async def served(front: str, n: int) -> Counter[str]:
    async with httpx.AsyncClient(base_url=f"http://{front}", timeout=10) as http:
        return Counter([(await http.get("/")).text for _ in range(n)])


# --- nginx ------------------------------------------------------------------------------------------------
@pytest.fixture
def ngx(lb: TestHost) -> Iterator[Nginx]:
    binary = nginx_binary()
    if binary is None:
        missing_server("nginx is missing (scripts/bootstrap installs it)")
    with nginx_on_host(lb, binary) as running:
        yield running


def nginx_router(pool: SshPool, ngx: Nginx, host: str = "lb-1") -> NginxRouter:
    return NginxRouter(SshExecutor(pool, host), upstream=ngx.upstream, file=ngx.upstream_file, conf=ngx.conf,
                       status=ngx.status, binary=nginx_binary() or "nginx", listen=ngx.listen, timeout=TIMEOUT)


async def test_nginx_on_a_host_is_driven_over_ssh(lb: TestHost, pool: SshPool, ngx: Nginx, apps: Apps) -> None:
    r = nginx_router(pool, ngx)
    (a, gate_a), (b, _), (c, _) = apps
    assert await r.ensure() == ngx.listen
    await r.set_backends([wb(a, 300), wb(b, 100), wb(c, 0)])
    assert await r.verify([wb(a, 300), wb(b, 100)]) is True
    assert await r.verify([wb(a, 100), wb(b, 100)]) is False
    assert {(x.address, x.weight) for x in await r.backends()} == {(a, 300), (b, 100)}
    names = await served(ngx.listen, 80)
    assert set(names) == {"a", "b"} and 45 <= names["a"] <= 75, names      # 3:1 of 80, with slack
    # The file changed on the host, in its private /srv: this machine has no such file.
    assert f"server {a} weight=300" in lb.run(["cat", ngx.upstream_file]).stdout
    assert not Path(ngx.upstream_file).exists()

    # drain over SSH: ps on the host sees the old worker holding a request sent before the reload.
    async with httpx.AsyncClient(base_url=f"http://{ngx.listen}", timeout=20) as http:
        await r.set_backends([wb(a, 100)])
        pending = asyncio.create_task(http.get("/slow"))
        await asyncio.sleep(0.3)
        await r.set_backends([wb(c, 100)])
        assert await r.drain(a, 0.3) == 1
        gate_a.set()
        assert (await pending).text == "a"
        assert await r.drain(a, 10.0) == 0
    stats = await r.stats()
    assert stats["old_workers"] == 0 and isinstance(stats["worker_pid"], int)
    assert stats["generation"] and [x["address"] for x in stats["backends"]] == [c]

    # nginx -t refuses on the host: the old upstream keeps serving, the error is nginx's line.
    lb.run(["sed", "-i", "s/worker_processes 1;/worker_processes 1;\\nbogus_directive on;/", ngx.conf])
    with pytest.raises(RouterError, match=r"lb-1.*nginx -t refused.*bogus_directive"):
        await r.set_backends([wb(b, 100)])
    assert await r.verify([wb(c, 100)]) is True
    assert await served(ngx.listen, 5) == Counter({"c": 5})


async def test_nginx_on_a_cut_host_is_a_router_error_within_the_timeout(
        lb: TestHost, pool: SshPool, ngx: Nginx, apps: Apps, tmp_path: Path) -> None:
    r = nginx_router(pool, ngx)
    (a, _), (b, _), _ = apps
    await r.set_backends([wb(a, 100)])               # connected
    lb.cut()
    try:
        started = time.monotonic()
        with pytest.raises(RouterError, match="lb-1"):
            await r.set_backends([wb(b, 100)])
        assert time.monotonic() - started < TIMEOUT + 2.0
        started = time.monotonic()
        with pytest.raises(RouterError, match="lb-1"):   # cannot tell (never "yes"), within the timeout
            await r.verify([wb(a, 100)])
        assert time.monotonic() - started < TIMEOUT + 2.0

        async with ssh_pool(lb, tmp_path) as fresh:   # never connected: the connect fails by name, in time
            started = time.monotonic()
            with pytest.raises(RouterError, match="lb-1"):
                await nginx_router(fresh, ngx).set_backends([wb(b, 100)])
            assert time.monotonic() - started < TIMEOUT + 2.0
    finally:
        lb.restore()
    assert "server " + a in lb.run(["cat", ngx.upstream_file]).stdout     # the cut left the old file


# --- HAProxy ----------------------------------------------------------------------------------------------
@pytest.fixture
def hx_binary() -> str:
    binary = haproxy_binary()
    if binary is None:
        missing_server("haproxy is missing (scripts/bootstrap installs it)")
    return binary


async def test_haproxy_on_a_host_is_driven_through_a_streamlocal_channel(
        lb: TestHost, pool: SshPool, apps: Apps, hx_binary: str) -> None:
    (a, _), (b, _), (c, _) = apps
    with haproxy_on_host(lb, hx_binary, slots=4) as hx:
        assert not Path(hx.socket).exists()          # the socket is in the host's /srv only
        r = HaproxyRouter(SshUnixChannel(pool, "lb-1", hx.socket, TIMEOUT), hx.backend, listen=hx.listen,
                          where=f"HAProxy on lb-1 at {hx.socket}")
        assert await r.ensure() == hx.listen
        await r.set_backends([wb(a, 3), wb(b, 1)])
        assert await r.verify([wb(a, 3), wb(b, 1)]) is True
        assert await r.verify([wb(a, 1), wb(b, 1)]) is False
        names = await served(hx.listen, 80)
        assert set(names) == {"a", "b"} and 50 <= names["a"] <= 70, names   # roundrobin 3:1 of 80
        await r.set_backends([wb(c, 1)])
        assert await r.drain(a, 5.0) == 0
        assert await served(hx.listen, 4) == Counter({"c": 4})

        wrong = HaproxyRouter(SshUnixChannel(pool, "lb-1", "/srv/haproxy/nope.sock", TIMEOUT), hx.backend)
        with pytest.raises(RouterError, match="lb-1"):
            await wrong.set_backends([wb(a, 1)])

        lb.cut()
        try:
            started = time.monotonic()
            with pytest.raises(RouterError, match="lb-1"):
                await r.set_backends([wb(a, 1)])
            assert time.monotonic() - started < TIMEOUT + 2.0
        finally:
            lb.restore()
        assert await r.verify([wb(c, 1)]) is True    # the refused change moved nothing
