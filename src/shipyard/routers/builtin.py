"""The built-in router, served by the local host agent (one listener per service/env)."""

from __future__ import annotations

from typing import Any

from shipyard.agent.client import AgentClient
from shipyard.agent.errors import NotFoundError
from shipyard.routers.base import WeightedBackend


class BuiltinRouter:
    def __init__(self, agent: AgentClient, service: str, env: str, listen: str | None,
                 options: dict[str, Any] | None = None) -> None:
        self.agent, self.service, self.env, self.listen = agent, service, env, listen
        self.options = options

    async def ensure(self) -> str | None:
        # No fixed `listen`: keep the address the router already has (stable across deploys), or let the
        # agent pick a free port the first time (":0" binds one; the router reports the real address).
        listen = self.listen or (await self.stats()).get("listen") or "127.0.0.1:0"
        info = await self.agent.ensure_router(self.service, self.env, listen, self.options)
        return info.get("listen") or listen

    async def set_backends(self, backends: list[WeightedBackend]) -> None:
        await self.agent.set_backends(self.service, self.env, [b.__dict__ for b in backends])

    async def backends(self) -> list[WeightedBackend]:
        stats = await self.stats()
        return [WeightedBackend(b["address"], int(b["weight"]), b.get("revision", ""), b.get("instance", ""))
                for b in stats.get("backends", [])]

    async def drain(self, address: str, timeout: float, ws_timeout: float | None = None) -> int:
        result = await self.agent.drain(self.service, self.env, address, timeout, ws_timeout)
        return int(result.get("remaining", 0))

    async def verify(self, backends: list[WeightedBackend]) -> bool | None:
        live = {(b.address, b.weight) for b in await self.backends()}
        return live == {(b.address, b.weight) for b in backends}

    async def stats(self) -> dict[str, Any]:
        try:
            return await self.agent.router_stats(self.service, self.env)
        except NotFoundError:         # no router yet: nothing was ever deployed here
            return {"backends": []}
