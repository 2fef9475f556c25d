"""RouterClient: the async client of the routers' admin API on router.sock, one method per endpoint.

The CLI and the engine talk to the routers directly, not through the agent, so routing stays
controllable while the agent restarts. Every call is idempotent (set, not add), so one dropped by a
router that died mid-request, or refused by one handing over, is simply sent again; the keeper holds
router.sock, so while no router runs a call waits in its backlog instead of failing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from shipyard.adminapi import NOT_SENT, Retry, UnixApiClient, raise_for_response
from shipyard.adminapi import segment as _seg
from shipyard.errors import AgentError

from .errors import RouterConflict, RouterNotFound, RouterRequestError, RouterUnavailableError
from .keeperctl import keeper_pid
from .paths import ProxyPaths

_BASE_URL = "http://shipyard-router"
RETRY_BUDGET = 10.0


def _handing_over(resp: httpx.Response) -> bool:
    return resp.status_code == 503


class RouterClient(UnixApiClient):
    """Talks to the routers of one state dir. Use as `async with RouterClient(dir) as routers: ...`."""

    def __init__(self, state_dir: Path, *, timeout: float = 30.0, retry_budget: float = RETRY_BUDGET) -> None:
        self.state_dir = Path(state_dir)
        super().__init__(ProxyPaths(self.state_dir).router_sock, _BASE_URL, timeout)
        self._retry = Retry(retry_budget, self._keeper_alive)

    async def _keeper_alive(self) -> bool:
        return await asyncio.to_thread(keeper_pid, self.state_dir) is not None

    async def _call(self, method: str, path: str, *, json: Any = None, timeout: float | None = None) -> httpx.Response:
        budget = self.timeout if timeout is None else max(self.timeout, timeout + 15.0)

        async def attempt() -> httpx.Response:
            return await self._http.request(method, path, json=json, timeout=httpx.Timeout(budget, connect=5.0))

        try:
            resp = await self._retry.send(attempt, idempotent=True, retry_status=_handing_over)
        except NOT_SENT as exc:
            raise RouterUnavailableError(
                f"no router process at {self.sock}: `shipyard agent start` starts the keeper that runs it") from exc
        except httpx.TimeoutException as exc:
            raise AgentError(f"the router at {self.sock} did not answer {method} {path} within {budget:.0f}s") \
                from exc
        except httpx.TransportError as exc:
            raise AgentError(f"the router at {self.sock} dropped {method} {path}: {exc or type(exc).__name__}") \
                from exc
        raise_for_response(resp, {404: RouterNotFound, 409: RouterConflict}, RouterRequestError)
        return resp

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        return (await self._call(method, path, **kw)).json()

    def _router(self, service: str, env: str, tail: str = "") -> str:
        return f"/v1/routers/{_seg(service)}/{_seg(env)}{tail}"

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", "/v1/status")
        return result

    async def list_routers(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._json("GET", "/v1/routers")
        return result

    async def metrics(self) -> str:
        return (await self._call("GET", "/metrics")).text

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
        """Returns {"remaining", "http_left", "ws_closed", "ws_cut"} (proxy.DrainReport): `remaining` counts
        requests still in flight on `address` and websockets cut when the budget ran out."""
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
