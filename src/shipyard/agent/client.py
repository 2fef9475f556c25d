"""AgentClient: the async client of the admin API, one method per endpoint, plain dicts out.

Transport failures become AgentUnavailableError with the command that fixes them; refusals become
AgentRequestError (an AgentError) carrying the agent's own message and HTTP status, so callers and the
CLI never see httpx exceptions.

When a keeper runs for the state dir, an agent that is not there (crashed, restarting, being upgraded)
is waited for, up to RETRY_BUDGET seconds, instead of failing the deploy that needed it: the keeper
brings it back. A call the agent may have acted on before it died is only sent again when doing it
twice is harmless; start_instance is made so by the instance id the client chooses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from shipyard.adminapi import NOT_SENT, Retry, UnixApiClient
from shipyard.adminapi import raise_for_response as _raise_for_response
from shipyard.adminapi import segment as _seg
from shipyard.agent.errors import AgentRequestError, ConflictError, NotFoundError
from shipyard.agent.paths import AgentPaths
from shipyard.agent.spec import new_instance_id
from shipyard.errors import AgentError, AgentUnavailableError
from shipyard.proxy import RouterClient, agent_expected

_BASE_URL = "http://shipyard-agent"
RETRY_BUDGET = 10.0


def unavailable(sock: Path) -> AgentUnavailableError:
    # Safe advice: `agent start` recovers interrupted deploys before it returns, so it never brings
    # back a half-moved traffic split.
    return AgentUnavailableError(f"agent not running at {sock}: `shipyard agent start` starts it and "
                                 "recovers interrupted deploys")


def raise_for_response(resp: httpx.Response) -> None:
    """Turn an error answer into the matching AgentRequestError (shared with the sync lifecycle code)."""
    _raise_for_response(resp, {404: NotFoundError, 409: ConflictError}, AgentRequestError)


def _restarting(resp: httpx.Response) -> bool:
    return resp.status_code == 503      # "shutting down": a restart the keeper finishes


class AgentClient(UnixApiClient):
    """Talks to the agent of one state dir. Use as `async with AgentClient(dir) as agent: ...`."""

    def __init__(self, state_dir: Path, *, timeout: float = 30.0, retry_budget: float = RETRY_BUDGET) -> None:
        self.state_dir = Path(state_dir)
        super().__init__(AgentPaths(self.state_dir).sock, _BASE_URL, timeout)
        self._retry = Retry(retry_budget, self._agent_expected)
        self._router: RouterClient | None = None
        self.closing: list[Callable[[], Awaitable[None]]] = []   # what this session opened beside (SSH)

    async def aclose(self) -> None:
        await super().aclose()
        if self._router is not None:
            await self._router.aclose()
        for close in reversed(self.closing):
            await close()
        self.closing.clear()

    @property
    def router(self) -> RouterClient:
        """The routers of the same state dir: a client of their own socket, not of the agent's."""
        if self._router is None:
            self._router = RouterClient(self.state_dir, timeout=self.timeout)
        return self._router

    async def _agent_expected(self) -> bool:
        return await asyncio.to_thread(agent_expected, self.state_dir)

    async def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                    timeout: float | None = None, idempotent: bool | None = None) -> httpx.Response:
        """One request; `timeout` widens the read budget for calls that wait on purpose (stop, drain).

        `idempotent` (default: GET) says whether a call the agent may have received before dying can be
        sent again once the keeper has brought it back."""
        budget = self.timeout if timeout is None else max(self.timeout, timeout + 15.0)
        query = {k: v for k, v in (params or {}).items() if v is not None}

        async def attempt() -> httpx.Response:
            return await self._http.request(method, path, json=json, params=query,
                                            timeout=httpx.Timeout(budget, connect=5.0))

        try:
            resp = await self._retry.send(attempt, idempotent=method == "GET" if idempotent is None else idempotent,
                                          retry_status=_restarting)
        except NOT_SENT as exc:
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
        instance_id: str | None = None,
    ) -> dict[str, Any]:
        """Start one instance. The id is chosen here (unless given), so a retry after the agent died
        mid-call finds the instance it already started instead of starting a second one."""
        body = {"service": service, "env": env, "revision": revision, "argv": list(argv), "cwd": str(cwd),
                "environ": environ or {}, "deployment": deployment, "port": port,
                "stop_timeout": stop_timeout, "labels": labels or {}, "restart": restart,
                "id": instance_id or new_instance_id(service, env, revision)}
        result: dict[str, Any] = await self._json(
            "POST", "/v1/instances", json={k: v for k, v in body.items() if v is not None}, idempotent=True)
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
            timeout=(timeout if timeout is not None else 10.0) + 15.0, idempotent=True)
        return result

    async def expire_instance(self, instance_id: str, at: float | None) -> dict[str, Any]:
        result: dict[str, Any] = await self._json(
            "POST", f"/v1/instances/{_seg(instance_id)}/expire", json={"at": at}, idempotent=True)
        return result
