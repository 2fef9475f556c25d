"""In-memory Target and Router that keep the same contracts as the real ones, for engine unit tests.

They record what the engine asked for, so tests can assert on the sequence of traffic changes, and they
can be told to fail (a start that raises, instances that die) to exercise the failure paths.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

from shipyard.domain.types import Instance
from shipyard.errors import AgentError
from shipyard.routers.base import WeightedBackend
from shipyard.targets.base import LaunchSpec

_ports = itertools.count(41000)


@dataclass
class FakeTarget:
    service: str
    env: str
    capabilities: frozenset[str] = frozenset({"keep_warm"})
    running: dict[str, Instance] = field(default_factory=dict)
    warm_until: dict[str, float | None] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)
    fail_start: bool = False
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    async def start(self, spec: LaunchSpec, count: int) -> list[Instance]:
        if self.fail_start:
            raise AgentError("fake target refuses to start instances")
        out = []
        for _ in range(count):
            iid = f"{spec.service}-{spec.env}-{spec.revision[:8]}-{next(self._ids):04d}"
            inst = Instance(id=iid, service=spec.service, env=spec.env, revision=spec.revision,
                            address=f"127.0.0.1:{next(_ports)}", pid=None, deployment=spec.deployment)
            self.running[iid] = inst
            out.append(inst)
        return out

    async def stop(self, instances: list[Instance], timeout: float) -> None:
        for inst in instances:
            if self.running.pop(inst.id, None) is not None:
                self.stopped.append(inst.id)
            self.warm_until.pop(inst.id, None)

    async def instances(self) -> list[Instance]:
        return list(self.running.values())

    async def keep_warm(self, instances: list[Instance], until: float | None) -> None:
        for inst in instances:
            self.warm_until[inst.id] = until

    def kill(self, instance_id: str) -> None:
        """Simulate an instance that died and was not restarted."""
        inst = self.running[instance_id]
        self.running[instance_id] = replace(inst, state="exited")

    def crash(self, instance_id: str, exit_code: int) -> None:
        """Simulate an instance whose process exited with `exit_code` and waits for its restart (backoff)."""
        inst = self.running[instance_id]
        self.running[instance_id] = replace(inst, state="backoff", exit_code=exit_code, restarts=inst.restarts,
                                            log_path=f"/logs/{instance_id}.log")


@dataclass
class FakeRouter:
    current: list[WeightedBackend] = field(default_factory=list)
    history: list[list[WeightedBackend]] = field(default_factory=list)
    drained: list[str] = field(default_factory=list)
    ensured: bool = False
    listen: str | None = None            # what ensure() reports as the front address

    async def ensure(self) -> str | None:
        self.ensured = True
        return self.listen

    async def set_backends(self, backends: list[WeightedBackend]) -> None:
        self.current = list(backends)
        self.history.append(list(backends))

    async def backends(self) -> list[WeightedBackend]:
        return list(self.current)

    async def drain(self, address: str, timeout: float, ws_timeout: float | None = None) -> int:
        self.drained.append(address)
        return 0

    async def verify(self, backends: list[WeightedBackend]) -> bool | None:
        return {(b.address, b.weight) for b in self.current} == {(b.address, b.weight) for b in backends}

    async def stats(self) -> dict[str, Any]:
        return {"backends": [b.__dict__ for b in self.current]}

    def serving_revisions(self) -> set[str]:
        return {b.revision for b in self.current if b.weight > 0}
