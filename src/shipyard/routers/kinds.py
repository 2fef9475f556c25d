"""shipyard's own router kinds, registered through the `shipyard.routers` entry points (pyproject.toml)
like any plugin's; the implementations are imported only when a router is built."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.config.deploy import BuiltinRouter as BuiltinConfig
from shipyard.config.deploy import HaproxyRouter as HaproxyConfig
from shipyard.config.deploy import NginxRouter as NginxConfig
from shipyard.config.ecs import AlbRouter as AlbConfig
from shipyard.plugins import BuildContext, Kind

if TYPE_CHECKING:
    from shipyard.routers.base import Router


def _builtin(config: BuiltinConfig, ctx: BuildContext) -> Router:
    from shipyard.routers.builtin import BuiltinRouter

    s = ctx.settings
    return BuiltinRouter(ctx.agent.router, ctx.service, ctx.env, s.listen, s.router_options or None)


def _haproxy(config: HaproxyConfig, ctx: BuildContext) -> Router:
    """HAProxy through its stats socket; a relative socket path starts at shipyard.yaml's directory. With
    `host`, the socket is on that host, reached through its SSH connection."""
    from shipyard.routers.haproxy import HaproxyRouter, RuntimeChannel, SshUnixChannel, UnixSocketChannel

    channel: RuntimeChannel
    if config.host:
        channel = SshUnixChannel(ctx.ssh_pool(), config.host, config.socket, float(config.timeout))
        where = f"HAProxy on {config.host} at {config.socket}"
    else:
        path = Path(config.socket) if Path(config.socket).is_absolute() else ctx.root / config.socket
        channel, where = UnixSocketChannel(str(path), float(config.timeout)), f"HAProxy at {path}"
    return HaproxyRouter(channel, config.backend, server_prefix=config.server_prefix, listen=ctx.settings.listen,
                         where=where)


def _nginx(config: NginxConfig, ctx: BuildContext) -> Router:
    """nginx on this machine, or on `host` over SSH."""
    from shipyard.routers.nginx import Executor, LocalExecutor, NginxRouter, SshExecutor

    ex: Executor = SshExecutor(ctx.ssh_pool(), config.host) if config.host else LocalExecutor()
    file = config.file if config.host or Path(config.file).is_absolute() else str(ctx.root / config.file)
    return NginxRouter(ex, upstream=config.upstream, file=file, conf=config.conf, status=config.status,
                       binary=config.binary, listen=ctx.settings.listen, timeout=float(config.timeout))


BUILTIN: Kind[Router] = Kind("builtin", BuiltinConfig, _builtin, "the agent's own reverse proxy")
HAPROXY: Kind[Router] = Kind("haproxy", HaproxyConfig, _haproxy, "a HAProxy driven through its runtime API")
NGINX: Kind[Router] = Kind("nginx", NginxConfig, _nginx, "an nginx whose upstream is rendered and reloaded")


def _alb(config: AlbConfig, ctx: BuildContext) -> Router:
    from shipyard.routers.alb import AlbRouter

    return AlbRouter(config)


def _alb_iam(config: AlbConfig, scope: Any) -> list[Any]:
    """What routers.alb calls: Describe* (no resource-level permission in IAM) and the one change, on the
    listener or the rule it names."""
    from shipyard.aws.policy import Statement

    changed = ("elasticloadbalancing:ModifyRule", config.rule_arn) if config.rule_arn else \
        ("elasticloadbalancing:ModifyListener", config.listener_arn)
    return [Statement("AlbRead", ("elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeRules",
                                  "elasticloadbalancing:DescribeLoadBalancers",
                                  "elasticloadbalancing:DescribeTargetGroupAttributes")),
            Statement("AlbWeights", (changed[0],), (changed[1],))]


ALB: Kind[Router] = Kind("alb", AlbConfig, _alb, "an ALB listener's weighted forward over target groups", _alb_iam)
