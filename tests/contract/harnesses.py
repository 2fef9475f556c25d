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

from aiohttp import web

from shipyard.agent.client import AgentClient
from shipyard.agent.daemon import ensure_agent_async, stop_agent_async
from shipyard.errors import AgentError, RouterError, ShipyardError
from shipyard.proxy import ProxyPaths, RouterClient
from shipyard.routers.base import Router
from shipyard.routers.builtin import BuiltinRouter
from shipyard.routers.haproxy import HaproxyRouter, UnixSocketChannel
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


@dataclass
class TargetCase:
    """One target of the kind under test."""

    target: Target
    service: str
    env: str
    errors: tuple[type[ShipyardError], ...]
    cut: Callable[[], Awaitable[None]]          # make the target's host unreachable
    bound: float = 15.0


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


ROUTERS: dict[str, RouterHarness] = {"builtin": builtin_router, "haproxy": haproxy_router}


# --- targets ----------------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def local_target(base: Path) -> AsyncIterator[TargetCase]:
    state = base / "state"
    async with running_agent(state) as agent:
        async def cut() -> None:
            await stop_agent_async(state, stop_instances=True)

        yield TargetCase(LocalTarget(agent, "api", "contract"), "api", "contract", (AgentError,), cut)


TARGETS: dict[str, TargetHarness] = {"local": local_target}


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

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
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
