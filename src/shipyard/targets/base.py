"""Where instances run. The engine only speaks this protocol; the local agent is the embedded default."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shipyard.domain.launch import fill_argv
from shipyard.domain.types import Instance


@dataclass(frozen=True)
class LaunchSpec:
    """How to start one instance of a prepared release: argv, working dir and environment (never argv secrets)."""

    service: str
    env: str
    revision: str
    deployment: str
    cwd: Path
    argv: list[str]
    environ: dict[str, str]
    stop_timeout: float

    def argv_for(self, port: int) -> list[str]:
        """argv with `{port}`, `$PORT` and `${PORT}` filled in: the target picks the port, so it fills them."""
        return fill_argv(self.argv, {"port": str(port)})


class Target(Protocol):
    capabilities: frozenset[str]   # e.g. {"keep_warm", "restart"}

    async def start(self, spec: LaunchSpec, count: int) -> list[Instance]:
        """Start `count` instances and return them once their processes run (not yet healthy)."""
        ...

    async def stop(self, instances: list[Instance], timeout: float) -> None:
        """Stop instances: SIGTERM, then SIGKILL after `timeout`; returns when they are gone."""
        ...

    async def instances(self) -> list[Instance]:
        """Every instance of this (service, env) the target knows, in start order."""
        ...

    async def keep_warm(self, instances: list[Instance], until: float | None) -> None:
        """Keep instances running out of rotation until the wall-clock time `until` (None cancels expiry)."""
        ...
