"""Instances on Amazon ECS, through boto3 (shipyard.aws makes every client and maps every error).

An instance is a *service revision*: an ECS service running `desired_count` tasks of one task definition
revision, reachable by the router at its target group's ARN.
- mode `rolling`: one service. start() points it at the release's task definition with ECS's rolling
  update (minimum healthy / maximum percent, circuit breaker with rollback) and waits for steady state;
  the previous revision is gone once ECS has replaced it, so nothing stays warm. Starting an earlier
  release again re-points the service at that release's existing revision (a rollback registers nothing).
- mode `blue_green`: two services, `<service>-blue` on the first target group and `<service>-green` on
  the second. start() brings up the color that is idle (absent, scaled to 0, or kept warm), the ALB
  router moves traffic between the two target groups, and the previous color keeps running for
  keep_previous (a tag on its service says until when; whoever lists instances after that scales it to 0).

Before anything changes, start() runs preflight(): the cluster, subnets, security group ingress on the
container port, target groups and IAM roles are checked, and every gap is listed at once (PreflightError,
exit 2). What is read from ECS's reported status (running counts, rolloutState) versus ECS's state is
kept in shipyard.targets.ecs_status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from shipyard.aws import AwsSettings, calling, client, error_code
from shipyard.config.ecs import EcsTarget as EcsConfig
from shipyard.domain.types import Instance
from shipyard.ecr.prune import prune as prune_images
from shipyard.ecr.refs import repository_of
from shipyard.errors import PreflightError, ShipyardError, TargetError
from shipyard.secrets.redact import REDACT_ENV
from shipyard.targets.base import LaunchSpec
from shipyard.targets.ecs_status import Rollout, old_deployments, rollout, short, unhealthy
from shipyard.targets.ecs_taskdef import (
    DIGEST_TAG,
    REVISION_TAG,
    container_environment,
    tag,
    task_definition,
)

log = logging.getLogger(__name__)

WARM_TAG = "shipyard:warm-until"       # epoch seconds; the service is scaled to 0 after that
STARTED_TAG = "shipyard:started"       # epoch seconds of the start that brought this revision up
DEPLOYMENT_TAG = "shipyard:deployment"
REUSE_LOOKBACK = 50                    # revisions of the family searched for one to reuse


def _snake(op: str) -> str:
    from botocore import xform_name

    return str(xform_name(op))


class EcsTarget:
    def __init__(self, config: EcsConfig, service: str, env: str, env_names: list[str] | None = None,
                 on_progress: Callable[[str], None] | None = None) -> None:
        self.c = config
        self.service, self.env = service, env
        self.env_names = list(env_names or [])    # the service's configured variables (values from the spec)
        self.on_progress = on_progress or (lambda line: log.info("%s", line))
        self.capabilities = frozenset({"keep_warm"}) if config.mode == "blue_green" else frozenset()
        # What ECS is not: one start is one service revision (desired_count tasks), and at most two exist
        # at once (blue and green; rolling has one). The container runs the image: LaunchSpec.argv is unused.
        self.per_start = 1
        self.capacity = len(self.slots())
        self.runs_argv = False
        self._aws_settings = AwsSettings(config.region, config.endpoint_url)
        self._clients: dict[str, Any] = {}
        self._revisions: dict[str, str] = {}     # task definition ARN -> shipyard revision (immutable)

    # ---- AWS calls -------------------------------------------------------------------------------

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = client(service, self._aws_settings, error=TargetError)
        return self._clients[service]

    async def _aws(self, api: str, op: str, resource: str, **kwargs: Any) -> dict[str, Any]:
        """One AWS call in a thread; a refusal is a TargetError naming the call and the resource."""
        def call() -> dict[str, Any]:
            with calling(api, op, resource, error=TargetError):
                return dict(getattr(self._client(api), _snake(op))(**kwargs))
        return await asyncio.to_thread(call)

    async def _find(self, api: str, op: str, resource: str, missing: str,
                    **kwargs: Any) -> dict[str, Any] | None:
        """Like _aws, but None when AWS answers the error code `missing` (the resource does not exist)."""
        from botocore.exceptions import ClientError

        def call() -> dict[str, Any] | None:
            with calling(api, op, resource, error=TargetError):
                try:
                    return dict(getattr(self._client(api), _snake(op))(**kwargs))
                except ClientError as exc:
                    if error_code(exc) == missing:
                        return None
                    raise
        return await asyncio.to_thread(call)

    # ---- names -----------------------------------------------------------------------------------

    def slots(self) -> dict[str, tuple[str, str | None]]:
        """ECS service name -> (color, target group ARN)."""
        tgs = self.c.target_groups
        if self.c.mode == "rolling":
            return {self.c.service: ("", tgs[0] if tgs else None)}
        return {f"{self.c.service}-blue": ("blue", tgs[0]), f"{self.c.service}-green": ("green", tgs[1])}

    def _address(self, name: str) -> str:
        tg = self.slots()[name][1]
        return tg or f"ecs:{self.c.cluster}/{name}"

    # ---- preflight -------------------------------------------------------------------------------

    async def preflight(self) -> None:
        """Check, before anything changes, that what the services need exists; every gap in one error."""
        gaps: list[str] = []

        async def check(what: Callable[[], Any]) -> None:
            try:
                await what()
            except ShipyardError as exc:         # a refusal while checking is a gap too, said as AWS said it
                gaps.append(str(exc))

        await asyncio.gather(check(lambda: self._check_cluster(gaps)), check(lambda: self._check_network(gaps)),
                             check(lambda: self._check_target_groups(gaps)), check(lambda: self._check_roles(gaps)))
        if gaps:
            raise PreflightError(f"ECS {self.c.cluster}/{self.c.service} is not ready, nothing was changed "
                                 f"({len(gaps)} problem{'s' if len(gaps) > 1 else ''}): " + "; ".join(gaps))

    async def _check_cluster(self, gaps: list[str]) -> None:
        out = await self._aws("ecs", "DescribeClusters", self.c.cluster, clusters=[self.c.cluster])
        if not any(c.get("status") == "ACTIVE" for c in out.get("clusters", [])):
            gaps.append(f"cluster {self.c.cluster} does not exist (or is not ACTIVE)")

    async def _check_network(self, gaps: list[str]) -> None:
        subnets = await self._aws("ec2", "DescribeSubnets", ",".join(self.c.subnets),
                                  Filters=[{"Name": "subnet-id", "Values": self.c.subnets}])
        found = {s["SubnetId"] for s in subnets.get("Subnets", [])}
        gaps += [f"subnet {s} does not exist" for s in self.c.subnets if s not in found]
        groups = await self._aws("ec2", "DescribeSecurityGroups", ",".join(self.c.security_groups),
                                 Filters=[{"Name": "group-id", "Values": self.c.security_groups}])
        have = {g["GroupId"]: g for g in groups.get("SecurityGroups", [])}
        gaps += [f"security group {g} does not exist" for g in self.c.security_groups if g not in have]
        port = self.c.task_definition.container.port
        if have and not any(_allows(g, port) for g in have.values()):
            gaps.append(f"no security group of {', '.join(sorted(have))} allows tcp port {port} in (the "
                        "container port: the load balancer could not reach the tasks)")

    async def _check_target_groups(self, gaps: list[str]) -> None:
        for arn in self.c.target_groups:
            out = await self._find("elbv2", "DescribeTargetGroups", arn, "TargetGroupNotFound", TargetGroupArns=[arn])
            if out is None:
                gaps.append(f"target group {arn} does not exist")
                continue
            for tg in out.get("TargetGroups", []):
                if tg.get("TargetType") not in (None, "ip"):
                    gaps.append(f"target group {tg.get('TargetGroupName')} has target type "
                                f"{tg.get('TargetType')}: awsvpc tasks need `ip`")

    async def _check_roles(self, gaps: list[str]) -> None:
        td = self.c.task_definition
        for what, arn in (("execution role", td.execution_role_arn), ("task role", td.task_role_arn)):
            if not arn:
                continue
            name = arn.rsplit("/", 1)[-1]
            if await self._find("iam", "GetRole", name, "NoSuchEntity", RoleName=name) is None:
                gaps.append(f"{what} {arn} does not exist")

    # ---- task definitions ------------------------------------------------------------------------

    async def task_definition_for(self, spec: LaunchSpec) -> str:
        """The ARN of the release's task definition: an existing revision with the same digest (a rollback,
        a redeploy) or a newly registered one."""
        secret_values = json.loads(spec.environ.get(REDACT_ENV, "[]") or "[]")
        environment = container_environment(self.c, self.env_names, spec.environ, secret_values)
        request = task_definition(self.c, spec.revision, self.env, environment)
        wanted = tag(request["tags"], DIGEST_TAG)
        family = self.c.task_definition.family
        listed = await self._aws("ecs", "ListTaskDefinitions", family, familyPrefix=family, status="ACTIVE",
                                 sort="DESC", maxResults=REUSE_LOOKBACK)
        for arn in listed.get("taskDefinitionArns", []):
            if short(arn).rsplit(":", 1)[0] != family:
                continue                          # familyPrefix also matches `api-worker` for `api`
            described = await self._aws("ecs", "DescribeTaskDefinition", short(arn), taskDefinition=arn,
                                        include=["TAGS"])
            if tag(described.get("tags"), DIGEST_TAG) == wanted:
                self.on_progress(f"{self.c.service}: reusing task definition {short(arn)} for {spec.revision[:8]}")
                return arn
        out = await self._aws("ecs", "RegisterTaskDefinition", family, **request)
        arn = str(out["taskDefinition"]["taskDefinitionArn"])
        image = request["containerDefinitions"][0]["image"]
        self.on_progress(f"{self.c.service}: registered task definition {short(arn)} ({image})")
        return arn

    async def _revision_of(self, arn: str) -> str:
        if arn not in self._revisions:
            out = await self._aws("ecs", "DescribeTaskDefinition", short(arn), taskDefinition=arn, include=["TAGS"])
            self._revisions[arn] = tag(out.get("tags"), REVISION_TAG) or ""
        return self._revisions[arn]

    # ---- services --------------------------------------------------------------------------------

    async def _services(self) -> dict[str, dict[str, Any]]:
        """This target's ACTIVE services by name (a deleted service is INACTIVE for a while)."""
        names = list(self.slots())
        out = await self._aws("ecs", "DescribeServices", f"{self.c.cluster}/{','.join(names)}",
                              cluster=self.c.cluster, services=names, include=["TAGS"])
        return {s["serviceName"]: s for s in out.get("services", []) if s.get("status") == "ACTIVE"}

    def _deployment_configuration(self) -> dict[str, Any]:
        d = self.c.deployment
        return {"minimumHealthyPercent": d.minimum_healthy_percent, "maximumPercent": d.maximum_percent,
                "deploymentCircuitBreaker": {"enable": d.circuit_breaker, "rollback": d.rollback}}

    def _network(self) -> dict[str, Any]:
        return {"awsvpcConfiguration": {"subnets": list(self.c.subnets), "securityGroups": list(self.c.security_groups),
                                        "assignPublicIp": "ENABLED" if self.c.assign_public_ip else "DISABLED"}}

    async def _create(self, name: str, td: str, tags: dict[str, str]) -> None:
        tg = self.slots()[name][1]
        c = self.c.task_definition.container
        kwargs: dict[str, Any] = dict(
            cluster=self.c.cluster, serviceName=name, taskDefinition=td, desiredCount=self.c.desired_count,
            launchType=self.c.launch_type, networkConfiguration=self._network(),
            deploymentConfiguration=self._deployment_configuration(), propagateTags="SERVICE",
            tags=[{"key": k, "value": v} for k, v in {"shipyard:service": self.service, "shipyard:env": self.env,
                                                      **tags}.items()])
        if tg:
            kwargs["loadBalancers"] = [{"targetGroupArn": tg, "containerName": c.name, "containerPort": c.port}]
        await self._aws("ecs", "CreateService", f"{self.c.cluster}/{name}", **kwargs)
        self.on_progress(f"{self.c.service}: created ECS service {self.c.cluster}/{name} (it was missing)")

    async def _tag(self, svc: dict[str, Any], tags: dict[str, str], remove: tuple[str, ...] = ()) -> None:
        arn = svc["serviceArn"]
        if tags:
            await self._aws("ecs", "TagResource", arn, resourceArn=arn,
                            tags=[{"key": k, "value": v} for k, v in tags.items()])
        if remove:
            await self._aws("ecs", "UntagResource", arn, resourceArn=arn, tagKeys=list(remove))

    async def _wait(self, name: str, done: Callable[[Rollout], bool], td: str | None,
                    timeout: float) -> Rollout:
        """Poll the service (ECS's reported status, through ecs_status) until `done`, with progress lines
        when something changes; TargetError at the deadline or when the rollout fails."""
        loop = asyncio.get_running_loop()
        deadline, last = loop.time() + timeout, ""
        while True:
            svc = (await self._services()).get(name)
            if svc is None:
                raise TargetError(f"ECS service {self.c.cluster}/{name} is gone (deleted while shipyard waited)")
            r = rollout(svc)
            why = r.failed(td) if td else None
            if why:
                raise TargetError(f"ECS service {self.c.cluster}/{name} did not roll out {short(td or '')}: {why}")
            if r.progress() != last:
                last = r.progress()
                self.on_progress(f"{self.c.service}: {name} {last}")
            if done(r):
                return r
            if loop.time() > deadline:
                event = f"; last event: {r.events[0]}" if r.events else ""
                raise TargetError(f"ECS service {self.c.cluster}/{name} not steady after {timeout:g}s ({last}){event}")
            await asyncio.sleep(self.c.poll_interval)

    # ---- the Target protocol ---------------------------------------------------------------------

    async def start(self, spec: LaunchSpec, count: int) -> list[Instance]:
        """Bring up one service revision of `spec.revision` (count must be 1: ECS runs desired_count
        tasks of it) and return it once the service is steady."""
        if count <= 0:
            return []
        if count != 1:
            raise TargetError(f"an ECS target starts one service revision at a time ({self.c.desired_count} "
                              f"tasks each), not {count}")
        await self.preflight()
        td = await self.task_definition_for(spec)
        services = await self._services()
        name = self._idle(services)
        svc = services.get(name)
        tags = {STARTED_TAG: f"{time.time():.3f}", DEPLOYMENT_TAG: spec.deployment}
        if svc is None:
            await self._create(name, td, tags)
        else:
            await self._aws("ecs", "UpdateService", f"{self.c.cluster}/{name}", cluster=self.c.cluster,
                            service=name, taskDefinition=td, desiredCount=self.c.desired_count,
                            deploymentConfiguration=self._deployment_configuration(),
                            networkConfiguration=self._network())
            await self._tag(svc, tags, remove=(WARM_TAG,))
        await self._wait(name, lambda r: r.steady(td), td, self.c.steady_timeout)
        self._revisions[td] = spec.revision
        svc = (await self._services())[name]
        return [self._instance(name, svc, td, spec.revision)]

    def _idle(self, services: dict[str, dict[str, Any]]) -> str:
        """The service a start goes to: the one service (rolling), or the idle color (blue_green)."""
        names = list(self.slots())
        if self.c.mode == "rolling":
            return names[0]
        for name in names:
            svc = services.get(name)
            if svc is None or int(svc.get("desiredCount", 0)) == 0:
                return name
        warm = [n for n in names if tag(services[n].get("tags"), WARM_TAG)]
        if warm:
            return warm[0]
        raise TargetError(f"both {' and '.join(names)} serve and neither is kept warm: nothing to replace "
                          "(stop one, or let the previous deploy finish)")

    def _instance(self, name: str, svc: dict[str, Any], td: str, revision: str) -> Instance:
        tags = svc.get("tags")
        labels = {"ecs_service": name, "task_definition": td, "color": self.slots()[name][0],
                  "desired": str(svc.get("desiredCount", 0))}
        warm = tag(tags, WARM_TAG)
        if warm:
            labels["warm_until"] = warm
        return Instance(id=f"{name}@{short(td)}", service=self.service, env=self.env, revision=revision,
                        address=self._address(name), deployment=tag(tags, DEPLOYMENT_TAG), labels=labels)

    async def instances(self) -> list[Instance]:
        """The service revisions that run, oldest start first; a warm one past its time is scaled to 0."""
        found: list[tuple[float, Instance]] = []
        for name, svc in (await self._services()).items():
            if int(svc.get("desiredCount", 0)) == 0:
                continue
            warm = tag(svc.get("tags"), WARM_TAG)
            if warm and float(warm) <= time.time():
                await self._scale_to_zero(name, svc)
                continue
            started = float(tag(svc.get("tags"), STARTED_TAG) or 0)
            td = str(svc["taskDefinition"])
            for older in old_deployments(svc):     # a rolling update mid-way: the old revision still serves
                found.append((started - 1e-3, self._instance(name, svc, older, await self._revision_of(older))))
            found.append((started, self._instance(name, svc, td, await self._revision_of(td))))
        return [inst for _, inst in sorted(found, key=lambda pair: pair[0])]

    async def _scale_to_zero(self, name: str, svc: dict[str, Any]) -> None:
        await self._aws("ecs", "UpdateService", f"{self.c.cluster}/{name}", cluster=self.c.cluster, service=name,
                        desiredCount=0)
        await self._tag(svc, {}, remove=(WARM_TAG,))
        self.on_progress(f"{self.c.service}: {name} scaled to 0")

    async def stop(self, instances: list[Instance], timeout: float) -> None:
        """Scale the services of these revisions to 0 and wait until no task runs (ECS stops its tasks
        with SIGTERM, then SIGKILL after the container's stopTimeout). A revision the service no longer
        runs (ECS replaced it in a rolling update) is already stopped."""
        services = await self._services()
        stopping = []
        for inst in instances:
            name = inst.labels.get("ecs_service", "")
            svc = services.get(name)
            if svc is None or int(svc.get("desiredCount", 0)) == 0 or \
                    svc.get("taskDefinition") != inst.labels.get("task_definition"):
                continue
            await self._scale_to_zero(name, svc)
            stopping.append(name)
        for name in stopping:
            await self._wait(name, lambda r: r.desired == 0 and r.service_running == 0, None,
                             max(timeout, self.c.poll_interval) + self.c.steady_timeout)

    async def instance_health(self, address: str) -> str | None:
        """The health of the service revision at `address` (its target group), as ECS and ELBv2 report it:
        the service runs its desired count (ECS's reported status) and at least that many targets of the
        group are `healthy` (the ALB's own health checks of the tasks, which ECS registers). shipyard never
        probes a target group ARN; on moto both halves are driven (tests/aws_world.py), never verified."""
        name = next((n for n in self.slots() if self._address(n) == address), None)
        if name is None:
            return f"{address} is no service of ECS {self.c.cluster}/{self.c.service}"
        svc = (await self._services()).get(name)
        tg = self.slots()[name][1]
        health = None
        if tg is not None and svc is not None:
            health = (await self._aws("elbv2", "DescribeTargetHealth", tg, TargetGroupArn=tg)
                      ).get("TargetHealthDescriptions", [])
        group = (tg or "").split(":targetgroup/", 1)[-1].split("/", 1)[0]
        return unhealthy(svc, f"{self.c.cluster}/{name}", health, group)

    async def prune_artifacts(self) -> dict[str, Any]:
        """ECR housekeeping (`target.ecr`): the newest `keep` images of each repository stay, and every one
        a live or warm service of the cluster uses (shipyard.ecr.prune reads that from ECS itself)."""
        if self.c.ecr is None:
            return {}
        repos = self.c.ecr.repositories or [
            r for r in [repository_of(self.c.image, {"service": self.service, "env": self.env})] if r]
        results = await prune_images(repos, self.c.ecr.keep, [self.c.cluster], settings=self._aws_settings)
        return {"pruned": [f"{r.plan.repository}@{d}" for r in results for d in r.deleted],
                "failures": [f for r in results for f in r.failures]}

    async def keep_warm(self, instances: list[Instance], until: float | None) -> None:
        """Mark their services warm until `until` (a tag on the service, so any shipyard process honours
        it); None removes the mark."""
        services = await self._services()
        for inst in instances:
            svc = services.get(inst.labels.get("ecs_service", ""))
            if svc is None:
                continue
            if until is None:
                await self._tag(svc, {}, remove=(WARM_TAG,))
            else:
                await self._tag(svc, {WARM_TAG: f"{until:.3f}"})


def _allows(group: dict[str, Any], port: int) -> bool:
    """Whether a security group lets tcp `port` in from anywhere it names (any source counts)."""
    for perm in group.get("IpPermissions", []):
        proto = perm.get("IpProtocol")
        if proto == "-1":
            return True
        if proto in ("tcp", "6") and int(perm.get("FromPort", -1)) <= port <= int(perm.get("ToPort", -1)):
            return True
    return False


