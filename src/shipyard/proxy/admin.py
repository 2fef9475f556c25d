"""The routers' admin API: JSON over HTTP on router.sock, a thin layer over RouterRegistry.

router.sock is bound once by the keeper and handed to each router generation, so a caller reaches
whichever generation is active and, while none is, waits in the socket's backlog instead of failing.
While a generation hands over to the next one it refuses changes (503, retried by the client), so no
change can land in a table that the next generation has already read.
"""

from __future__ import annotations

import os
import time
from typing import Any

from aiohttp import web

import shipyard
from shipyard.adminweb import errors_middleware, field_num, field_str, read_body

from .metrics import render_prometheus
from .registry import RouterRegistry

HANDING_OVER = "the router is handing over to a new process; retry"


class AdminState:
    """What the handlers act on, plus the flag that freezes changes during a handover."""

    def __init__(self, registry: RouterRegistry, generation: int) -> None:
        self.registry = registry
        self.generation = generation
        self.started_at = time.time()
        self.frozen = False

    def status(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "generation": self.generation, "version": shipyard.__version__,
                "started_at": self.started_at, "handing_over": self.frozen,
                "routers": self.registry.records()}


STATE_KEY = web.AppKey("state", AdminState)


def _state(request: web.Request) -> AdminState:
    return request.app[STATE_KEY]


def _registry(request: web.Request) -> RouterRegistry:
    return request.app[STATE_KEY].registry


def _key(request: web.Request) -> tuple[str, str]:
    return request.match_info["service"], request.match_info["env"]


def _refuse(request: web.Request) -> str | None:
    return HANDING_OVER if request.method != "GET" and _state(request).frozen else None


async def status(request: web.Request) -> web.Response:
    return web.json_response(_state(request).status())


async def list_routers(request: web.Request) -> web.Response:
    return web.json_response(_registry(request).records())


async def ensure_router(request: web.Request) -> web.Response:
    data = await read_body(request)
    result = await _registry(request).ensure(*_key(request), field_str(data, "listen"), data.get("options"))
    return web.json_response(result)


async def router_stats(request: web.Request) -> web.Response:
    return web.json_response(await _registry(request).stats(*_key(request)))


async def set_backends(request: web.Request) -> web.Response:
    data = await read_body(request)
    return web.json_response(await _registry(request).set_backends(*_key(request), data.get("backends")))


async def drain(request: web.Request) -> web.Response:
    data = await read_body(request)
    timeout = field_num(data.get("timeout"), "timeout", required=True)
    assert timeout is not None
    report = await _registry(request).drain(
        *_key(request), field_str(data, "address"), timeout, field_num(data.get("ws_timeout"), "ws_timeout"))
    return web.json_response(report)


async def delete_router(request: web.Request) -> web.Response:
    service, env = _key(request)
    await _registry(request).delete(service, env)
    return web.json_response({"service": service, "env": env, "deleted": True})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=render_prometheus(await _registry(request).observed()), content_type="text/plain",
                        headers={"X-Prometheus-Format": "0.0.4"})


def make_app(state: AdminState) -> web.Application:
    app = web.Application(middlewares=[errors_middleware(_refuse)], client_max_size=4 * 1024 * 1024)
    app[STATE_KEY] = state
    app.router.add_get("/v1/status", status)
    app.router.add_get("/v1/routers", list_routers)
    app.router.add_put("/v1/routers/{service}/{env}", ensure_router)
    app.router.add_delete("/v1/routers/{service}/{env}", delete_router)
    app.router.add_get("/v1/routers/{service}/{env}/stats", router_stats)
    app.router.add_post("/v1/routers/{service}/{env}/backends", set_backends)
    app.router.add_post("/v1/routers/{service}/{env}/drain", drain)
    app.router.add_get("/metrics", metrics)
    return app
