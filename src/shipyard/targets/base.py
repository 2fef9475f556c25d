"""Where instances run. The engine only speaks this protocol; the local agent is the embedded default."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class ShippingTarget(Protocol):
    """A target whose instances run elsewhere: the release built here is shipped to it before any starts."""

    async def ship(self, release: Path, keep: int, in_use: set[str]) -> dict[str, Any]:
        """Copy the built release to wherever instances run (idempotent); keep `keep` releases there, never
        one named in `in_use`. Returns what was done, for the Prepare step's record."""
        ...


@runtime_checkable
class PlacingTarget(Protocol):
    """A target that places instances itself (hosts): it also says which old instances keep serving, so
    that a batch the planner counts in instances is made of whole hosts."""

    @property
    def desired(self) -> int:
        """Instances wanted on the hosts this run deploys to."""
        ...

    def keep_serving(self, olds: list[Instance], count: int) -> list[Instance]:
        """The `count` old instances that stay in rotation while the others are replaced."""
        ...

    async def probe(self) -> dict[str, str | None]:
        """Each host: None when its agent answers, else why not (one line)."""
        ...

    def watch(self, tolerate: Callable[[int, int], bool], on_lost: Callable[[str, str, bool], None]) -> None:
        """How to treat a host lost mid-run: `tolerate(hosts, reachable)` whether to carry on without it,
        `on_lost(host, why, carry_on)` to record it."""
        ...

    def skip(self, names: Iterable[str]) -> None:
        """Leave these hosts out of this run (unreachable, and minimum_healthy_hosts allows it)."""
        ...
