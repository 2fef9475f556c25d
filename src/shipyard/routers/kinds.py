"""shipyard's own router kinds, registered through the `shipyard.routers` entry points (pyproject.toml)
like any plugin's; the implementations are imported only when a router is built."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from shipyard.config.deploy import BuiltinRouter as BuiltinConfig
from shipyard.config.deploy import HaproxyRouter as HaproxyConfig
from shipyard.plugins import BuildContext, Kind

if TYPE_CHECKING:
    from shipyard.routers.base import Router


def _builtin(config: BuiltinConfig, ctx: BuildContext) -> Router:
    from shipyard.routers.builtin import BuiltinRouter

    s = ctx.settings
    return BuiltinRouter(ctx.agent.router, ctx.service, ctx.env, s.listen, s.router_options or None)


def _haproxy(config: HaproxyConfig, ctx: BuildContext) -> Router:
    """HAProxy through its stats socket; a relative socket path starts at shipyard.yaml's directory."""
    from shipyard.routers.haproxy import HaproxyRouter, UnixSocketChannel

    path = Path(config.socket) if Path(config.socket).is_absolute() else ctx.root / config.socket
    return HaproxyRouter(UnixSocketChannel(str(path), float(config.timeout)), config.backend,
                         server_prefix=config.server_prefix, listen=ctx.settings.listen, where=f"HAProxy at {path}")


BUILTIN: Kind[Router] = Kind("builtin", BuiltinConfig, _builtin, "the agent's own reverse proxy")
HAPROXY: Kind[Router] = Kind("haproxy", HaproxyConfig, _haproxy, "a HAProxy driven through its runtime API")
