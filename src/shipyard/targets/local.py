"""The embedded default target: app processes supervised by the local host agent."""

from __future__ import annotations

import asyncio
from typing import Any

from shipyard.agent.client import AgentClient
from shipyard.domain.types import Instance
from shipyard.ipc import free_port
from shipyard.targets.base import LaunchSpec


def to_instance(rec: dict[str, Any]) -> Instance:
    return Instance(id=rec["id"], service=rec["service"], env=rec["env"], revision=rec["revision"],
                    address=rec["address"], state=rec.get("state", "running"), pid=rec.get("pid"),
                    deployment=rec.get("deployment"), labels=dict(rec.get("labels") or {}),
                    exit_code=rec.get("exit_code"), signal=rec.get("signal"), restarts=int(rec.get("restarts") or 0),
                    log_path=rec.get("log_path"))


class LocalTarget:
    capabilities = frozenset({"keep_warm", "restart"})

    def __init__(self, agent: AgentClient, service: str, env: str) -> None:
        self.agent, self.service, self.env = agent, service, env

    async def start(self, spec: LaunchSpec, count: int) -> list[Instance]:
        async def one() -> Instance:
            port = free_port()
            rec = await self.agent.start_instance(
                service=spec.service, env=spec.env, revision=spec.revision, deployment=spec.deployment,
                cwd=str(spec.cwd), argv=spec.argv_for(port),
                environ=spec.environ, port=port, stop_timeout=spec.stop_timeout)
            return to_instance(rec)
        return list(await asyncio.gather(*(one() for _ in range(count))))

    async def stop(self, instances: list[Instance], timeout: float) -> None:
        await asyncio.gather(*(self.agent.stop_instance(i.id, timeout=timeout) for i in instances))

    async def instances(self) -> list[Instance]:
        recs = await self.agent.list_instances(service=self.service, env=self.env)
        return [to_instance(r) for r in recs if r.get("state") not in ("stopped", "exited")]

    async def keep_warm(self, instances: list[Instance], until: float | None) -> None:
        await asyncio.gather(*(self.agent.expire_instance(i.id, until) for i in instances))
