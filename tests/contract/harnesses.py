"""Per-kind harnesses: what each registered target or router kind needs to run the contract, started and
torn down around one test.

A router harness is `async with harness(base) as case:` where `base` is a short private directory of the
test and `case` a RouterCase; a target harness likewise gives a TargetCase. The contract's fixtures look
harnesses up by kind name in ROUTERS and TARGETS, so adding a kind (nginx, ssh, ECS...) is one function
here and one line in the table; tests/contract/test_coverage.py fails while a registered kind has none.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from shipyard.agent.client import AgentClient
from shipyard.agent.daemon import ensure_agent_async, stop_agent_async
from shipyard.errors import AgentError, RouterError, ShipyardError, SshError, TargetError
from shipyard.proxy import ProxyPaths, RouterClient
from shipyard.routers.base import Router
from shipyard.routers.builtin import BuiltinRouter
from shipyard.routers.haproxy import HaproxyRouter, UnixSocketChannel
from shipyard.ssh import SshPool
from shipyard.targets.base import Target
from shipyard.targets.local import LocalTarget
from shipyard.testing.haproxy import haproxy_binary, haproxy_process
from shipyard.testing.servers import missing_server

AGENT_START = 30.0      # generous: only reached when something is broken


@dataclass
class RouterCase:
    """One router of the kind under test, with what the contract needs to know about it."""

    router: Router
    errors: tuple[type[ShipyardError], ...]     # what its failures raise (documented per kind)
    cut: Callable[[], Awaitable[None]]          # make the router unreachable (its control socket gone)
    hung: Callable[[Path], contextlib.AbstractAsyncContextManager[Router]]   # one whose peer never answers
    can_verify: bool = True                     # False: verify() answers None (cannot tell)
    bound: float = 10.0                         # a failure must surface within this many seconds
    address: Callable[[Backend], str] | None = None   # what this router routes to for a backend (ALB: its
                                                      # target group); None: the backend's host:port
    traffic: str | None = None                  # None: requests through the front reach the backends; else
                                                # why they cannot here (the contract checks the control plane)

    def at(self, backend: Backend) -> str:
        return self.address(backend) if self.address is not None else backend.address


@dataclass
class TargetCase:
    """One target of the kind under test."""

    target: Target
    service: str
    env: str
    errors: tuple[type[ShipyardError], ...]
    cut: Callable[[], Awaitable[None]]          # make the target's host unreachable
    bound: float = 15.0
    bind: str = "127.0.0.1"                     # where the app listens (BIND_HOST): reachable from here


RouterHarness = Callable[[Path], contextlib.AbstractAsyncContextManager[RouterCase]]
TargetHarness = Callable[[Path], contextlib.AbstractAsyncContextManager[TargetCase]]


@contextlib.asynccontextmanager
async def silent_unix_socket(path: Path) -> AsyncIterator[Path]:
    """A unix socket that accepts connections and never answers: the peer of a hung router."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    path.parent.mkdir(parents=True, exist_ok=True)
    server = await asyncio.start_unix_server(hold, str(path))
    try:
        yield path
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def running_agent(state_dir: Path) -> AsyncIterator[AgentClient]:
    """This test's own keeper, routers and agent on `state_dir`, fully stopped after (instances too)."""
    await ensure_agent_async(state_dir, AGENT_START)
    client = AgentClient(state_dir, timeout=AGENT_START)
    try:
        yield client
    finally:
        await client.aclose()
        await stop_agent_async(state_dir, stop_instances=True)


# --- routers ----------------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def builtin_router(base: Path) -> AsyncIterator[RouterCase]:
    state = base / "state"
    async with running_agent(state) as agent:

        @contextlib.asynccontextmanager
        async def hung(where: Path) -> AsyncIterator[Router]:
            async with silent_unix_socket(ProxyPaths(where).router_sock):
                client = RouterClient(where, timeout=1.0, retry_budget=0.0)
                try:
                    yield BuiltinRouter(client, "api", "hung", None)
                finally:
                    await client.aclose()

        async def cut() -> None:
            await stop_agent_async(state, stop_instances=True)

        yield RouterCase(BuiltinRouter(agent.router, "api", "contract", None), (AgentError,), cut, hung)


@contextlib.asynccontextmanager
async def haproxy_router(base: Path) -> AsyncIterator[RouterCase]:
    binary = haproxy_binary()
    if binary is None:
        missing_server("haproxy is missing (scripts/bootstrap installs it)")
        return
    with haproxy_process(binary, slots=4) as hx:

        @contextlib.asynccontextmanager
        async def hung(where: Path) -> AsyncIterator[Router]:
            async with silent_unix_socket(where / "hung.sock") as path:
                yield HaproxyRouter(UnixSocketChannel(str(path), timeout=1.0), hx.backend)

        async def cut() -> None:
            Path(hx.socket).unlink()        # the stats socket gone: what a stopped HAProxy leaves

        router = HaproxyRouter(UnixSocketChannel(hx.socket, timeout=2.0), hx.backend, listen=hx.listen)
        yield RouterCase(router, (RouterError,), cut, hung)


@contextlib.asynccontextmanager
async def nginx_router(base: Path) -> AsyncIterator[RouterCase]:
    from shipyard.routers.nginx import LocalExecutor, NginxRouter
    from shipyard.testing.nginx import nginx_binary, nginx_process

    binary = nginx_binary()
    if binary is None:
        missing_server("nginx is missing (scripts/bootstrap installs it)")
        return
    with nginx_process(binary) as ngx:

        def make(status: str) -> NginxRouter:
            return NginxRouter(LocalExecutor(), upstream=ngx.upstream, file=ngx.upstream_file, conf=ngx.conf,
                               status=status, binary=binary, listen=ngx.listen, timeout=3.0)

        @contextlib.asynccontextmanager
        async def hung(where: Path) -> AsyncIterator[Router]:
            server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)   # accepts, never answers
            port = server.sockets[0].getsockname()[1]
            try:
                yield make(f"127.0.0.1:{port}")
            finally:
                server.close()

        async def cut() -> None:
            ngx.proc.terminate()             # nginx stopped: its status server and its workers gone
            await asyncio.to_thread(ngx.proc.wait, 10)

        yield RouterCase(make(ngx.status), (RouterError,), cut, hung)


ROUTERS: dict[str, RouterHarness] = {"builtin": builtin_router, "haproxy": haproxy_router, "nginx": nginx_router}


# --- targets ----------------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def local_target(base: Path) -> AsyncIterator[TargetCase]:
    state = base / "state"
    async with running_agent(state) as agent:
        async def cut() -> None:
            await stop_agent_async(state, stop_instances=True)

        yield TargetCase(LocalTarget(agent, "api", "contract"), "api", "contract", (AgentError,), cut)


_FLEET: dict[str, Any] = {}


def contract_host() -> Any:
    """One namespaced SSH host for the session (tests/nethosts.py), with shipyard set up on it once."""
    if "host" not in _FLEET:
        from nethosts import HostFactory, open_pool

        pool = open_pool("sc")
        _FLEET["pool"] = pool
        factory = HostFactory(pool)
        _FLEET["factory"] = factory
        _FLEET["host"] = factory.add("ct-1")
    return _FLEET["host"]


def close_contract_hosts() -> None:
    if "factory" in _FLEET:
        _FLEET["factory"].close()
    if "pool" in _FLEET:
        _FLEET["pool"].close()
    _FLEET.clear()


def _ssh_pool(host: Any, base: Path) -> SshPool:
    from nethosts import ssh_pool
    return ssh_pool(host, base / "known_hosts")


@contextlib.asynccontextmanager
async def ssh_target(base: Path) -> AsyncIterator[TargetCase]:
    from shipyard.hosts.agent import RemoteAgents
    from shipyard.hosts.runtime import build_runtime
    from shipyard.hosts.setup import SetupResult, setup_hosts
    from shipyard.hosts.ship import ship_release
    from shipyard.targets.ssh import FleetHost, SshTarget

    host = contract_host()
    async with _ssh_pool(host, base) as pool:
        if not _FLEET.get("setup"):
            result = (await setup_hosts(pool, [host.name], build_runtime(Path("/tmp/shy-contract-runtime"))))[host.name]
            assert isinstance(result, SetupResult), result
            _FLEET["setup"] = True
        await ship_release(pool, [host.name], base, "api", base.name, 50)
        agents = RemoteAgents(pool, timeout=5.0)
        target = SshTarget(agents, [FleetHost(host.name, host.address, "/srv/shipyard")], "api", "contract",
                           per_host=4, port=18080)

        async def cut() -> None:
            host.cut()

        try:
            yield TargetCase(target, "api", "contract", (TargetError, AgentError, SshError), cut, bind="0.0.0.0")
        finally:
            host.restore()
            pool.drop(host.name)             # the connection cut with the link: a fresh one for the clean-up
            target.hosts = list(target.all_hosts)
            deadline = asyncio.get_running_loop().time() + 20.0
            while True:                      # the link takes a moment to carry traffic again
                try:
                    await pool.connection(host.name)
                    break
                except SshError:
                    if asyncio.get_running_loop().time() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            try:
                await target.stop(await target.instances(), 1.0)
            finally:
                await agents.aclose()


TARGETS: dict[str, TargetHarness] = {"local": local_target, "ssh": ssh_target}


# --- what the contract sends traffic to -------------------------------------------------------------------
APP = r'''
import http.server, json, os, signal, sys, threading

if sys.argv[1:] == ["ignore-term"]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"instance": os.environ.get("SHIPYARD_INSTANCE"),
                           "revision": os.environ.get("SHIPYARD_REVISION"), "pid": os.getpid()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer((os.environ.get("BIND_HOST", "127.0.0.1"), int(os.environ["PORT"])),
                                Handler).serve_forever()
'''


def app_argv(app: Path, *args: str) -> list[str]:
    return [sys.executable, str(app), *args]


@dataclass
class Backend:
    """An aiohttp backend on loopback: `/` answers its name, `/slow/{key}` waits for the test's gate."""

    name: str
    runner: web.AppRunner
    port: int
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    began: dict[str, asyncio.Event] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def gate(self, key: str) -> asyncio.Event:
        return self.gates.setdefault(key, asyncio.Event())

    def started(self, key: str) -> asyncio.Event:
        return self.began.setdefault(key, asyncio.Event())


async def start_backend(name: str) -> Backend:
    app = web.Application()
    holder: list[Backend] = []

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text=name, headers={"X-Backend": name})

    async def slow(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        holder[0].started(key).set()
        await holder[0].gate(key).wait()
        return web.Response(text=f"{name} {key}", headers={"X-Backend": name})

    app.router.add_get("/", hello)
    app.router.add_get("/slow/{key}", slow)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        sock = s.dup()
    site = web.SockSite(runner, sock)
    await site.start()
    backend = Backend(name, runner, int(sock.getsockname()[1]))
    holder.append(backend)
    return backend


# The AWS kinds on moto (aws_harnesses.py builds on the cases above, hence last).
from .aws_harnesses import alb_router, ecs_target  # noqa: E402

ROUTERS["alb"] = alb_router
TARGETS["ecs"] = ecs_target
