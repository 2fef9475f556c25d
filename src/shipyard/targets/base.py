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
class ReportingTarget(Protocol):
    """A target whose platform says whether an instance is healthy (ECS: the service's running tasks and
    its target group's target health). Its addresses are no host:port (a target group ARN), so the engine
    asks it on the health check's schedule instead of probing them; `health:`'s type and path do not apply."""

    async def instance_health(self, address: str) -> str | None:
        """None when the instance at `address` is healthy, else why not (one line)."""
        ...


@runtime_checkable
class CheckedTarget(Protocol):
    """A target that can tell, before anything changes, that what it needs exists (ECS: cluster, subnets,
    security group ingress, target groups, roles). The engine asks before a deploy is queued."""

    async def preflight(self) -> None:
        """Raise PreflightError (a UsageError, exit 2) naming every gap at once; return when none."""
        ...


@runtime_checkable
class PruningTarget(Protocol):
    """A target whose releases leave artifacts outside shipyard's release store (ECS: images in ECR); the
    engine asks it to prune them after each successful deploy, once the new release is live and the
    previous one marked warm, so what serves or may serve again is never pruned."""

    async def prune_artifacts(self) -> dict[str, Any]:
        """{"pruned": [...], "failures": [...]} ({} when it is configured to keep everything)."""
        ...


@runtime_checkable
class ProgressTarget(Protocol):
    """A target that tells how a long start or stop moves on (ECS rolling out for minutes); the engine points
    `on_progress` at the deployment's events (`instance.progress`)."""

    on_progress: Callable[[str], None]


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


# --- release targets ------------------------------------------------------------------------------------
Progress = Callable[[str, dict[str, Any]], None]
"""(message, data): one progress line of an activation (uploads, command output), recorded as an event."""


@dataclass(frozen=True)
class ReleaseSpec:
    """One release as a release target activates it: the built directory and what its commands may see."""

    service: str
    env: str
    revision: str
    deployment: str
    release: Path                   # the built release directory (publish_dir, if any, inside it)
    environ: dict[str, str]         # resolved variables, secrets included: for a command's env, never argv
    progress: Progress


@runtime_checkable
class ReleaseTarget(Protocol):
    """A target with no instances (a static site, a `cdk deploy`): a release is activated as a whole, and
    a rollback activates the previous release again. The engine runs these all at once (engine.release):
    there is no traffic split to move, so hooks, health (`status`), bake, alarms, history and notifications
    wrap one Activate step. A record is a JSON-able dict with at least "revision"; the engine stores it in
    the deployment's context and hands it back to `rollback`."""

    capabilities: frozenset[str]   # "rollback_needs_release": the previous release dir must exist to roll back

    async def preflight(self) -> list[str]:
        """Every problem that would stop an activation (missing bucket, no such distribution), all at once;
        [] when none. Nothing is changed."""
        ...

    async def activate(self, spec: ReleaseSpec) -> dict[str, Any]:
        """Make `spec.release` the live one (idempotent: activating the live release again changes nothing
        it need not). Returns its record."""
        ...

    async def rollback(self, to: dict[str, Any], spec: ReleaseSpec) -> dict[str, Any]:
        """Make the release of record `to` live again, without rebuilding or re-uploading what it can
        reuse; `spec` is that release's (its directory may be gone unless the capability asks for it)."""
        ...

    async def status(self) -> str | None:
        """The health check of what is live: None when healthy, else why not (one line)."""
        ...

    async def prune(self, keep: int, in_use: set[str]) -> dict[str, Any]:
        """Delete activated releases beyond the newest `keep`, never a revision in `in_use`."""
        ...
