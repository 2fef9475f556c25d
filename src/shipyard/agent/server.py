"""The admin API: JSON over HTTP on the agent's unix socket, a thin layer over Supervisor and routers.

Every error leaves as {"error": "..."} with a 4xx/5xx status, so the client can raise AgentError with
the agent's own words; validation happens here so a bad request is a 400 naming the field.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from shipyard.agent.errors import AgentRequestError
from shipyard.agent.runtime import Agent
from shipyard.agent.spec import InstanceSpec
from shipyard.errors import AgentError

log = logging.getLogger(__name__)

AGENT_KEY = web.AppKey("agent", Agent)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    agent = request.app[AGENT_KEY]
    if agent.shutting_down and request.method != "GET":
        return _error(503, "the agent is shutting down")
    try:
        return await handler(request)
    except AgentRequestError as exc:
        return _error(exc.status, str(exc))
    except AgentError as exc:
        return _error(500, str(exc))
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, exc.reason)
        raise
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return _error(500, f"internal agent error: {type(exc).__name__}: {exc}")


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AgentRequestError(f"request body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise AgentRequestError("request body must be a JSON object")
    return data


def _str(data: dict[str, Any], key: str, required: bool = True) -> Any:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise AgentRequestError(f"{key}: a non-empty string is required")
    return value


def _num(value: Any, key: str, *, required: bool = False) -> float | None:
    if value is None and not required:
        return None
    try:
        num = float(value)
    except (TypeError, ValueError):
        raise AgentRequestError(f"{key}: a number is required") from None
    if not math.isfinite(num) or num < 0:
        raise AgentRequestError(f"{key}: must be a finite number >= 0")
    return num


def _str_map(data: dict[str, Any], key: str) -> dict[str, str]:
    value = data.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise AgentRequestError(f"{key}: an object of string values is required")
    return value


def _spec(data: dict[str, Any]) -> InstanceSpec:
    argv = data.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise AgentRequestError("argv: a non-empty list of strings is required")
    port = data.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise AgentRequestError("port: an integer 1-65535 is required")
    stop_timeout = _num(data.get("stop_timeout"), "stop_timeout")
    return InstanceSpec(
        service=_str(data, "service"), env=_str(data, "env"), revision=_str(data, "revision"),
        argv=argv, cwd=_str(data, "cwd"), environ=_str_map(data, "environ"),
        deployment=_str(data, "deployment", required=False), port=port,
        stop_timeout=10.0 if stop_timeout is None else stop_timeout, labels=_str_map(data, "labels"),
        restart=bool(data.get("restart", True)))


# ---- handlers ---------------------------------------------------------------------------------

async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[AGENT_KEY].status())


async def start_instance(request: web.Request) -> web.Response:
    rec = await request.app[AGENT_KEY].supervisor.start(_spec(await _body(request)))
    return web.json_response(rec.public(), status=201)


async def list_instances(request: web.Request) -> web.Response:
    q = request.query
    recs = request.app[AGENT_KEY].supervisor.find(
        service=q.get("service") or None, env=q.get("env") or None, revision=q.get("revision") or None,
        state=q.get("state") or None)
    return web.json_response([r.public() for r in recs])


async def get_instance(request: web.Request) -> web.Response:
    return web.json_response(request.app[AGENT_KEY].supervisor.get(request.match_info["id"]).public())


async def stop_instance(request: web.Request) -> web.Response:
    timeout = _num(request.query.get("timeout"), "timeout")
    result = await request.app[AGENT_KEY].supervisor.stop(request.match_info["id"], timeout)
    return web.json_response(result)


async def expire_instance(request: web.Request) -> web.Response:
    data = await _body(request)
    if "at" not in data:
        raise AgentRequestError('at: required (epoch seconds, or null to cancel)')
    rec = request.app[AGENT_KEY].supervisor.expire(request.match_info["id"], _num(data["at"], "at"))
    return web.json_response(rec.public())


def _router_key(request: web.Request) -> tuple[str, str]:
    return request.match_info["service"], request.match_info["env"]


async def ensure_router(request: web.Request) -> web.Response:
    data = await _body(request)
    result = await request.app[AGENT_KEY].routers.ensure(*_router_key(request), _str(data, "listen"),
                                                         data.get("options"))
    return web.json_response(result)


async def router_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[AGENT_KEY].routers.stats(*_router_key(request)))


async def set_backends(request: web.Request) -> web.Response:
    data = await _body(request)
    result = request.app[AGENT_KEY].routers.set_backends(*_router_key(request), data.get("backends"))
    return web.json_response(result)


async def drain(request: web.Request) -> web.Response:
    data = await _body(request)
    timeout = _num(data.get("timeout"), "timeout", required=True)
    assert timeout is not None
    report = await request.app[AGENT_KEY].routers.drain(
        *_router_key(request), _str(data, "address"), timeout, _num(data.get("ws_timeout"), "ws_timeout"))
    return web.json_response(report)


async def delete_router(request: web.Request) -> web.Response:
    service, env = _router_key(request)
    await request.app[AGENT_KEY].routers.delete(service, env)
    return web.json_response({"service": service, "env": env, "deleted": True})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[AGENT_KEY].metrics(), content_type="text/plain",
                        headers={"X-Prometheus-Format": "0.0.4"})


async def shutdown(request: web.Request) -> web.Response:
    data = await _body(request)
    stop_instances = bool(data.get("stop_instances", True))
    request.app[AGENT_KEY].request_shutdown(stop_instances)
    return web.json_response({"shutting_down": True, "stop_instances": stop_instances}, status=202)


def make_app(agent: Agent) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=4 * 1024 * 1024)
    app[AGENT_KEY] = agent
    app.router.add_get("/v1/status", status)
    app.router.add_post("/v1/instances", start_instance)
    app.router.add_get("/v1/instances", list_instances)
    app.router.add_get("/v1/instances/{id}", get_instance)
    app.router.add_delete("/v1/instances/{id}", stop_instance)
    app.router.add_post("/v1/instances/{id}/expire", expire_instance)
    app.router.add_put("/v1/routers/{service}/{env}", ensure_router)
    app.router.add_delete("/v1/routers/{service}/{env}", delete_router)
    app.router.add_get("/v1/routers/{service}/{env}/stats", router_stats)
    app.router.add_post("/v1/routers/{service}/{env}/backends", set_backends)
    app.router.add_post("/v1/routers/{service}/{env}/drain", drain)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/shutdown", shutdown)
    return app


def make_metrics_app(agent: Agent) -> web.Application:
    """Only /metrics, for --metrics-listen: the TCP port must not expose the admin API."""
    app = web.Application(middlewares=[errors_middleware])
    app[AGENT_KEY] = agent
    app.router.add_get("/metrics", metrics)
    return app
