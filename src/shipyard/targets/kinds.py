"""shipyard's own target kinds, registered through the `shipyard.targets` entry points (pyproject.toml)
like any plugin's; the implementations are imported only when a target is built."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.config.deploy import LocalTarget as LocalConfig
from shipyard.config.deploy import SshTarget as SshConfig
from shipyard.config.ecs import EcsTarget as EcsConfig
from shipyard.config.release_targets import CommandTarget as CommandConfig
from shipyard.config.release_targets import StaticTarget as StaticConfig
from shipyard.plugins import BuildContext, Kind

if TYPE_CHECKING:
    from shipyard.targets.base import ReleaseTarget, Target


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


def _ecs_iam(config: EcsConfig, scope: Any) -> list[Any]:
    """What targets.ecs calls. Describe/List calls and RegisterTaskDefinition have no resource-level
    permission in IAM ("*"); the services, the cluster and the roles passed to ECS are named. Pulling the
    image and reading the `secrets` references is the execution role's business, not shipyard's."""
    from shipyard.aws.policy import Statement

    region, td = config.region, config.task_definition
    services = [scope.arn("ecs", f"service/{config.cluster.rsplit('/', 1)[-1]}/{name}", region)
                for name in ([config.service] if config.mode == "rolling"
                             else [f"{config.service}-blue", f"{config.service}-green"])]
    roles = tuple(arn for arn in (td.execution_role_arn, td.task_role_arn) if arn)
    return [Statement("EcsCluster", ("ecs:DescribeClusters",),
                      (scope.arn("ecs", f"cluster/{config.cluster.rsplit('/', 1)[-1]}", region),)),
            Statement("EcsServices", ("ecs:DescribeServices", "ecs:CreateService", "ecs:UpdateService",
                                      "ecs:TagResource", "ecs:UntagResource"), tuple(services)),
            Statement("EcsTaskDefinitions", ("ecs:RegisterTaskDefinition", "ecs:ListTaskDefinitions",
                                             "ecs:DescribeTaskDefinition")),
            Statement("EcsTaskDefinitionTags", ("ecs:TagResource",),
                      (scope.arn("ecs", f"task-definition/{td.family}:*", region),)),
            Statement("EcsPreflight", ("ec2:DescribeSubnets", "ec2:DescribeSecurityGroups",
                                       "elasticloadbalancing:DescribeTargetGroups",
                                       "elasticloadbalancing:DescribeTargetHealth")),
            Statement("EcsRolesRead", ("iam:GetRole",), roles),
            Statement("EcsPassRoles", ("iam:PassRole",), roles)]


ECS: Kind[Target] = Kind("ecs", EcsConfig, _ecs, "service revisions on Amazon ECS (rolling, or blue/green "
                                                 "over two target groups)", _ecs_iam)


def _static(config: StaticConfig, ctx: BuildContext) -> ReleaseTarget:
    from shipyard.targets.static import StaticTarget

    return StaticTarget(config, ctx.service, ctx.env, ctx.settings.publish_dir)


def _static_iam(config: StaticConfig, scope: Any) -> list[Any]:
    """What targets.static calls: HeadBucket/ListObjectsV2 (s3:ListBucket), Head/Get/Put/Copy/DeleteObject
    under the release prefixes, and the distribution's config and invalidations (CloudFront is global)."""
    from shipyard.aws.policy import Statement

    base = config.prefix.split("{sha}")[0]
    distribution = f"arn:aws:cloudfront::{scope.account}:distribution/{config.distribution_id}"
    return [Statement("StaticSiteBucketList", ("s3:ListBucket",), (f"arn:aws:s3:::{config.bucket}",)),
            Statement("StaticSiteReleases", ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"),
                      (f"arn:aws:s3:::{config.bucket}/{base}*",)),
            Statement("StaticSiteDistribution", ("cloudfront:GetDistributionConfig", "cloudfront:UpdateDistribution",
                                                 "cloudfront:CreateInvalidation", "cloudfront:GetInvalidation"),
                      (distribution,))]


STATIC: Kind[ReleaseTarget] = Kind("static", StaticConfig, _static,
                                   "a built site on S3 behind CloudFront, one key prefix per release", _static_iam)


def _command(config: CommandConfig, ctx: BuildContext) -> ReleaseTarget:
    from shipyard.targets.command import CommandTarget

    return CommandTarget(config, ctx.service, ctx.env, ctx.root)


COMMAND: Kind[ReleaseTarget] = Kind("command", CommandConfig, _command,
                                    "deploy/rollback/status commands (CDK, Terraform, Serverless...)")
