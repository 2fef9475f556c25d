"""The admin API: JSON over HTTP on the agent's unix socket, a thin layer over the Supervisor.

Errors and field validation follow shipyard.adminapi (shared with the routers' admin API). Routers are
not served here any more: they run in their own processes with their own socket (shipyard.proxy).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from shipyard.adminweb import errors_middleware, field_num, field_str, read_body
from shipyard.agent.errors import AgentRequestError
from shipyard.agent.runtime import Agent
from shipyard.agent.spec import InstanceSpec, valid_instance_id

AGENT_KEY = web.AppKey("agent", Agent)


def _refuse(request: web.Request) -> str | None:
    if request.app[AGENT_KEY].shutting_down and request.method != "GET":
        return "the agent is shutting down"
    return None


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
    stop_timeout = field_num(data.get("stop_timeout"), "stop_timeout")
    iid = field_str(data, "id", required=False)
    if iid is not None and not valid_instance_id(iid):
        raise AgentRequestError("id: letters, digits, '.', '_' and '-' only (at most 200), not starting "
                                "with a symbol")
    return InstanceSpec(
        service=field_str(data, "service"), env=field_str(data, "env"), revision=field_str(data, "revision"),
        argv=argv, cwd=field_str(data, "cwd"), environ=_str_map(data, "environ"),
        deployment=field_str(data, "deployment", required=False), port=port,
        stop_timeout=10.0 if stop_timeout is None else stop_timeout, labels=_str_map(data, "labels"),
        restart=bool(data.get("restart", True)), id=iid)


# ---- handlers ---------------------------------------------------------------------------------

async def status(request: web.Request) -> web.Response:
    return web.json_response(await request.app[AGENT_KEY].status())


async def start_instance(request: web.Request) -> web.Response:
    spec = _spec(await read_body(request))
    supervisor = request.app[AGENT_KEY].supervisor
    again = spec.id is not None and spec.id in {r.id for r in supervisor.records()}
    rec = await supervisor.start(spec)
    return web.json_response(rec.public(), status=200 if again else 201)


async def list_instances(request: web.Request) -> web.Response:
    q = request.query
    recs = request.app[AGENT_KEY].supervisor.find(
        service=q.get("service") or None, env=q.get("env") or None, revision=q.get("revision") or None,
        state=q.get("state") or None)
    return web.json_response([r.public() for r in recs])


async def get_instance(request: web.Request) -> web.Response:
    return web.json_response(request.app[AGENT_KEY].supervisor.get(request.match_info["id"]).public())


async def stop_instance(request: web.Request) -> web.Response:
    timeout = field_num(request.query.get("timeout"), "timeout")
    result = await request.app[AGENT_KEY].supervisor.stop(request.match_info["id"], timeout)
    return web.json_response(result)


async def expire_instance(request: web.Request) -> web.Response:
    data = await read_body(request)
    if "at" not in data:
        raise AgentRequestError('at: required (epoch seconds, or null to cancel)')
    rec = request.app[AGENT_KEY].supervisor.expire(request.match_info["id"], field_num(data["at"], "at"))
    return web.json_response(rec.public())


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=await request.app[AGENT_KEY].metrics(), content_type="text/plain",
                        headers={"X-Prometheus-Format": "0.0.4"})


async def shutdown(request: web.Request) -> web.Response:
    data = await read_body(request)
    stop_instances = bool(data.get("stop_instances", True))
    request.app[AGENT_KEY].request_shutdown(stop_instances)
    return web.json_response({"shutting_down": True, "stop_instances": stop_instances}, status=202)


def make_app(agent: Agent) -> web.Application:
    app = web.Application(middlewares=[errors_middleware(_refuse)], client_max_size=4 * 1024 * 1024)
    app[AGENT_KEY] = agent
    app.router.add_get("/v1/status", status)
    app.router.add_post("/v1/instances", start_instance)
    app.router.add_get("/v1/instances", list_instances)
    app.router.add_get("/v1/instances/{id}", get_instance)
    app.router.add_delete("/v1/instances/{id}", stop_instance)
    app.router.add_post("/v1/instances/{id}/expire", expire_instance)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/shutdown", shutdown)
    return app


def make_metrics_app(agent: Agent) -> web.Application:
    """Only /metrics, for --metrics-listen: the TCP port must not expose the admin API."""
    app = web.Application(middlewares=[errors_middleware(_refuse)])
    app[AGENT_KEY] = agent
    app.router.add_get("/metrics", metrics)
    return app
