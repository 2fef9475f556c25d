"""What a kind's factory gets (BuildContext), and building the target and router of one (service, env)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.plugins.registry import kind

if TYPE_CHECKING:
    from shipyard.agent.client import AgentClient
    from shipyard.engine.settings import ServiceSettings
    from shipyard.hosts.agent import RemoteAgents
    from shipyard.routers.base import Router
    from shipyard.ssh import SshPool
    from shipyard.targets.base import Target


@dataclass(frozen=True)
class BuildContext:
    """What a factory may use to build the target or router of one (service, env)."""

    root: Path                      # directory of shipyard.yaml: relative paths in config start here
    state_dir: Path                 # the project's .shipyard directory (for a kind's own state)
    service: str
    env: str
    settings: ServiceSettings       # everything read out of the config for this (service, env), e.g.
                                    # `.listen` (the env's front address) and `.router_options`
    agent: AgentClient              # this project's local agent (started)
    ssh_pool: Callable[[], SshPool]  # this invocation's SSH connections to `hosts:` (closed with `agent`)
    host_agents: Callable[[], RemoteAgents]   # the hosts' agents over those connections
    hosts: Mapping[str, Any]        # the config's `hosts:` (address, user, release_dir, labels)


def build_target(config: Any, ctx: BuildContext) -> Target:
    """The Target for a validated `deploy.target` block."""
    target: Target = kind("targets", config.type).build(config, ctx)
    return target


def build_router(config: Any, ctx: BuildContext) -> Router:
    """The Router for a validated `deploy.router` block."""
    router: Router = kind("routers", config.type).build(config, ctx)
    return router
