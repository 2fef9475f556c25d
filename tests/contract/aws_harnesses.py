"""Contract harnesses of the AWS kinds on moto: the `ecs` target and the `alb` router.

Each case gets its own moto server (so `cut` can stop it: AWS unreachable) and its own world
(tests/aws_world.py: VPC, cluster, ALB, blue and green target groups, roles). What moto cannot be is a data
plane: it runs no container and forwards no request. The adapters say what follows from that themselves
(EcsTarget is a ReportingTarget: its instances' health is ECS's running count and the target group's
target health, never a probe of an address, and `per_start`/`capacity` say one service revision per start,
two at most; AlbRouter has `counts_in_flight = False`), and the ALB case says `traffic`: why no request is
sent through its front here, so the contract checks the listener ELBv2 reports instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

from aws_world import World, build
from shipyard.errors import PreflightError, RouterError, TargetError
from shipyard.routers.alb import AlbRouter
from shipyard.routers.base import Router
from shipyard.targets.ecs import EcsTarget

from .harnesses import Backend, RouterCase, TargetCase

ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "ap-northeast-2",
       "MOTO_ECS_SERVICE_RUNNING": "2"}     # what moto reports running for each service it creates (driven)
NO_DATA_PLANE = "moto forwards no request: the weights are checked on the listener ELBv2 reports"


@contextlib.contextmanager
def _environ() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in (*ENV, "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")}
    os.environ.update(ENV)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(key, None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.asynccontextmanager
async def moto_world() -> AsyncIterator[tuple[World, Callable[[], Awaitable[None]]]]:
    """A moto server of this case and the world in it, and how to stop that server (AWS unreachable)."""
    from moto.server import ThreadedMotoServer

    with _environ():
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        running = [True]

        async def stop() -> None:
            if running[0]:
                running[0] = False
                await asyncio.to_thread(server.stop)

        try:
            yield await asyncio.to_thread(build, f"http://{host}:{port}"), stop
        finally:
            await stop()


@contextlib.asynccontextmanager
async def _silent_tcp() -> AsyncIterator[str]:
    """An endpoint that accepts connections and never answers: AWS hung."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in held:
            writer.close()
        server.close()


@contextlib.asynccontextmanager
async def ecs_target(base: Path) -> AsyncIterator[TargetCase]:
    async with moto_world() as (world, stop):
        cfg = world.target(mode="blue_green", target_groups=[world.blue, world.green], secrets={})
        yield TargetCase(EcsTarget(cfg, "api", "contract"), "api", "contract", (TargetError, PreflightError), stop)


@contextlib.asynccontextmanager
async def alb_router(base: Path) -> AsyncIterator[RouterCase]:
    async with moto_world() as (world, stop):
        groups: dict[str, str] = {}

        def address(backend: Backend) -> str:
            """Each backend is a target group of its own (ALB routes to groups, not to host:port)."""
            if backend.name not in groups:
                groups[backend.name] = world.target_group(f"c{backend.name}")
            return groups[backend.name]

        @contextlib.asynccontextmanager
        async def hung(where: Path) -> AsyncIterator[Router]:
            async with _silent_tcp() as endpoint:
                yield AlbRouter(world.router(endpoint_url=endpoint, timeout=1.0))

        yield RouterCase(AlbRouter(world.router(timeout=5.0)), (RouterError,), stop, hung, address=address,
                         traffic=NO_DATA_PLANE)
