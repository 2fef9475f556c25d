"""shipyard's own target kinds, registered through the `shipyard.targets` entry points (pyproject.toml)
like any plugin's; the implementations are imported only when a target is built."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard.config.deploy import LocalTarget as LocalConfig
from shipyard.plugins import BuildContext, Kind

if TYPE_CHECKING:
    from shipyard.targets.base import Target


def _local(config: LocalConfig, ctx: BuildContext) -> Target:
    from shipyard.targets.local import LocalTarget

    return LocalTarget(ctx.agent, ctx.service, ctx.env)


LOCAL: Kind[Target] = Kind("local", LocalConfig, _local, "processes on this host, supervised by its agent")
