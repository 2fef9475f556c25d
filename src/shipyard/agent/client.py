"""AgentClient: the async client of the admin API, one method per endpoint, plain dicts out.

Transport failures become AgentUnavailableError with the command that fixes them; refusals become
AgentRequestError (an AgentError) carrying the agent's own message and HTTP status, so callers and the
CLI never see httpx exceptions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from shipyard.agent.errors import AgentRequestError, ConflictError, NotFoundError
from shipyard.agent.paths import AgentPaths, SocketName
from shipyard.errors import AgentError, AgentUnavailableError

_BASE_URL = "http://shipyard-agent"


def unavailable(sock: Path) -> AgentUnavailableError:
    return AgentUnavailableError(f"agent not running at {sock}: start it with `shipyard agent start`")


def raise_for_response(resp: httpx.Response) -> None:
    """Turn an error answer into the matching AgentRequestError (shared with the sync lifecycle code)."""
    if resp.status_code < 400:
        return
    try:
        message = str(resp.json().get("error") or resp.text)
    except (ValueError, AttributeError):
        message = resp.text or resp.reason_phrase
    cls = {404: NotFoundError, 409: ConflictError}.get(resp.status_code, AgentRequestError)
    raise cls(message, resp.status_code)


def _seg(value: str) -> str:
    return quote(value, safe="")


class AgentClient:
    """Talks to the agent of one state dir. Use as `async with AgentClient(dir) as agent: ...`."""

    def __init__(self, state_dir: Path, *, timeout: float = 30.0) -> None:
        self.sock = AgentPaths(Path(state_dir)).sock
        self.timeout = timeout
        self._name = SocketName(self.sock)
        self._http = httpx.AsyncClient(
            # No pooled connections: unix-socket connects are cheap, and a pool would tie the client to
            # the event loop that opened them (the CLI may run several asyncio.run() with one client).
            transport=httpx.AsyncHTTPTransport(uds=self._name.name, limits=httpx.Limits(max_keepalive_connections=0)),
            base_url=_BASE_URL,
            timeout=httpx.Timeout(timeout, connect=5.0))

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        self._name.close()

    async def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                    timeout: float | None = None) -> httpx.Response:
        """One request; `timeout` widens the read budget for calls that wait on purpose (stop, drain)."""
        budget = self.timeout if timeout is None else max(self.timeout, timeout + 15.0)
        try:
            resp = await self._http.request(
                method, path, json=json, params={k: v for k, v in (params or {}).items() if v is not None},
                timeout=httpx.Timeout(budget, connect=5.0))
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise unavailable(self.sock) from exc
        except httpx.TimeoutException as exc:
            raise AgentError(f"agent at {self.sock} did not answer {method} {path} within {budget:.0f}s") \
                from exc
        except httpx.TransportError as exc:
            raise AgentError(f"agent at {self.sock} dropped {method} {path}: {exc or type(exc).__name__}") \
                from exc
        raise_for_response(resp)
        return resp

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        return (await self._call(method, path, **kw)).json()

    # ---- agent ---------------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", "/v1/status")
        return result

    async def metrics(self) -> str:
        return (await self._call("GET", "/metrics")).text

    async def shutdown(self, stop_instances: bool = True) -> dict[str, Any]:
        """Ask the agent to exit; it answers first, then stops. Use daemon.stop_agent to also wait."""
        result: dict[str, Any] = await self._json("POST", "/v1/shutdown",
                                                  json={"stop_instances": stop_instances})
        return result

    # ---- instances -----------------------------------------------------------------------------
    async def start_instance(
        self, *, service: str, env: str, revision: str, argv: list[str], cwd: str | Path,
        environ: dict[str, str] | None = None, deployment: str | None = None, port: int | None = None,
        stop_timeout: float | None = None, labels: dict[str, str] | None = None, restart: bool = True,
    ) -> dict[str, Any]:
        body = {"service": service, "env": env, "revision": revision, "argv": list(argv), "cwd": str(cwd),
                "environ": environ or {}, "deployment": deployment, "port": port,
                "stop_timeout": stop_timeout, "labels": labels or {}, "restart": restart}
        result: dict[str, Any] = await self._json(
            "POST", "/v1/instances", json={k: v for k, v in body.items() if v is not None})
        return result

    async def list_instances(self, service: str | None = None, env: str | None = None,
                             revision: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._json(
            "GET", "/v1/instances", params={"service": service, "env": env, "revision": revision,
                                            "state": state})
        return result

    async def get_instance(self, instance_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", f"/v1/instances/{_seg(instance_id)}")
        return result

    async def stop_instance(self, instance_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Returns {id, state, exit_code, signal, killed} once the process group is gone."""
        result: dict[str, Any] = await self._json(
            "DELETE", f"/v1/instances/{_seg(instance_id)}", params={"timeout": timeout},
            timeout=(timeout if timeout is not None else 10.0) + 15.0)
        return result

    async def expire_instance(self, instance_id: str, at: float | None) -> dict[str, Any]:
        result: dict[str, Any] = await self._json(
            "POST", f"/v1/instances/{_seg(instance_id)}/expire", json={"at": at})
        return result

    # ---- routers -------------------------------------------------------------------------------
    def _router(self, service: str, env: str, tail: str = "") -> str:
        return f"/v1/routers/{_seg(service)}/{_seg(env)}{tail}"

    async def ensure_router(self, service: str, env: str, listen: str,
                            options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create or move the router; `options` (proxy.RouterOptions keys) replace the running ones."""
        body: dict[str, Any] = {"listen": listen}
        if options is not None:
            body["options"] = options
        result: dict[str, Any] = await self._json("PUT", self._router(service, env), json=body)
        return result

    async def set_backends(self, service: str, env: str, backends: list[dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = await self._json(
            "POST", self._router(service, env, "/backends"), json={"backends": backends})
        return result

    async def drain(self, service: str, env: str, address: str, timeout: float,
                    ws_timeout: float | None = None) -> dict[str, Any]:
        """Returns {"remaining": n, "http_left": n, "ws_closed": n, "ws_cut": n}: `remaining` counts requests
        still in flight on `address` and websockets cut when the budget ran out (proxy.DrainReport)."""
        result: dict[str, Any] = await self._json(
            "POST", self._router(service, env, "/drain"),
            json={"address": address, "timeout": timeout, "ws_timeout": ws_timeout},
            timeout=max(timeout, ws_timeout or 0.0))
        return result

    async def router_stats(self, service: str, env: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", self._router(service, env, "/stats"))
        return result

    async def delete_router(self, service: str, env: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("DELETE", self._router(service, env))
        return result
