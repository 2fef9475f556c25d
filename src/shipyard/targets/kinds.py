"""shipyard's own target kinds, registered through the `shipyard.targets` entry points (pyproject.toml)
like any plugin's; the implementations are imported only when a target is built."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.config.deploy import LocalTarget as LocalConfig
from shipyard.config.deploy import SshTarget as SshConfig
from shipyard.config.ecs import EcsTarget as EcsConfig
from shipyard.plugins import BuildContext, Kind

if TYPE_CHECKING:
    from shipyard.targets.base import Target


def _local(config: LocalConfig, ctx: BuildContext) -> Target:
    from shipyard.targets.local import LocalTarget

    return LocalTarget(ctx.agent, ctx.service, ctx.env)


LOCAL: Kind[Target] = Kind("local", LocalConfig, _local, "processes on this host, supervised by its agent")


def _ssh(config: SshConfig, ctx: BuildContext) -> Target:
    """Instances on `hosts:`, through each host's agent over this invocation's SSH connections."""
    from shipyard.hosts.ship import ship_release
    from shipyard.targets.ssh import FleetHost, SshTarget

    pool = ctx.ssh_pool()
    fleet = [FleetHost(name, ctx.hosts[name].address, ctx.hosts[name].release_dir) for name in config.hosts]

    async def ship(hosts: Sequence[str], release: Path, service: str, keep: int, in_use: set[str]) -> dict[str, Any]:
        results = await ship_release(pool, list(hosts), release, service, release.name, keep, in_use=in_use)
        return {name: r.__dict__ for name, r in results.items()}

    return SshTarget(ctx.host_agents(), fleet, ctx.service, ctx.env, per_host=config.per_host, port=config.port,
                     mode=config.mode, ship=ship)


SSH: Kind[Target] = Kind("ssh", SshConfig, _ssh, "processes on hosts reached over SSH, through each host's agent")


def _ecs(config: EcsConfig, ctx: BuildContext) -> Target:
    """Service revisions on ECS; the container gets the service's configured variables (by name: their
    values are resolved per deployment and reach the target in the launch spec)."""
    from shipyard.targets.ecs import EcsTarget

    return EcsTarget(config, ctx.service, ctx.env, env_names=sorted(ctx.settings.environ))


ECS: Kind[Target] = Kind("ecs", EcsConfig, _ecs, "service revisions on Amazon ECS (rolling, or blue/green "
                                                 "over two target groups)")
