"""What a GLI-style ECS service needs, created in moto (server mode) for one test: VPC, two subnets, a
security group open on the container port, a cluster, an ALB with blue and green target groups and a
listener, the IAM roles, and a Secrets Manager secret. Names carry a per-world suffix, so tests that share
one moto server (module scope) never see each other's resources.

moto keeps ECS's *state* (task definitions, services, listener actions) and reports a service's *status*
(running counts, rolloutState) from MOTO_ECS_SERVICE_RUNNING, read when a service is created:
`running(monkeypatch, n)` drives that, it cannot be verified (shipyard.targets.ecs_status). Likewise the
targets of blue and green: moto's ECS registers no task in a target group, so the world registers two IP
targets in each (what ECS does for two tasks), and moto reports every registered target `healthy`.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from shipyard.config.ecs import AlbRouter as AlbConfig
from shipyard.config.ecs import EcsTarget as EcsConfig

REGION = "ap-northeast-2"
PORT = 8080
ROLE_POLICY = '{"Version": "2012-10-17", "Statement": []}'


def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)


def running(monkeypatch: pytest.MonkeyPatch, tasks: int) -> None:
    """What moto will report as running tasks of services created from now on."""
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", str(tasks))


@dataclass
class World:
    endpoint: str
    suffix: str
    vpc: str = ""
    subnets: list[str] = field(default_factory=list)
    sg: str = ""
    closed_sg: str = ""
    cluster: str = ""
    listener: str = ""
    blue: str = ""
    green: str = ""
    execution_role: str = ""
    task_role: str = ""
    secret_arn: str = ""

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint)

    def target(self, **overrides: Any) -> EcsConfig:
        data: dict[str, Any] = {
            "type": "ecs", "cluster": self.cluster, "service": f"api-{self.suffix}", "region": REGION,
            "endpoint_url": self.endpoint, "registry": "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com",
            "image": "{registry}/api:{sha}",
            "task_definition": {"family": f"api-{self.suffix}", "cpu": "256", "memory": "512",
                                "execution_role_arn": self.execution_role, "task_role_arn": self.task_role,
                                "container": {"name": "api", "port": PORT}},
            "environment": {"DJANGO_SETTINGS_MODULE": "config.settings.prod"},
            "secrets": {"DATABASE_URL": self.secret_arn},
            "subnets": self.subnets, "security_groups": [self.sg], "target_groups": [self.blue],
            "desired_count": 2, "poll_interval": 0.05, "steady_timeout": 10,
        }
        data.update(overrides)
        return EcsConfig.model_validate(data)

    def router(self, **overrides: Any) -> AlbConfig:
        return AlbConfig.model_validate({"type": "alb", "listener_arn": self.listener, "region": REGION,
                                         "endpoint_url": self.endpoint, **overrides})

    def register(self, target_group: str, tasks: int) -> None:
        """Put `tasks` IP targets in a target group: what ECS does for the tasks it starts, which moto's ECS
        does not (moto then reports each registered target `healthy`: driven, not verified)."""
        self.client("elbv2").register_targets(TargetGroupArn=target_group, Targets=[
            {"Id": f"10.0.0.{10 + i}", "Port": PORT} for i in range(tasks)])

    def deregister(self, target_group: str) -> None:
        elb = self.client("elbv2")
        targets = [d["Target"] for d in elb.describe_target_health(TargetGroupArn=target_group)
                   ["TargetHealthDescriptions"]]
        if targets:
            elb.deregister_targets(TargetGroupArn=target_group, Targets=targets)

    def target_group(self, name: str) -> str:
        """Another ip target group in the world's VPC (its deregistration delay 1 s, like blue and green)."""
        elb = self.client("elbv2")
        arn = str(elb.create_target_group(Name=f"{name}-{self.suffix}", Protocol="HTTP", Port=PORT, VpcId=self.vpc,
                                          TargetType="ip")["TargetGroups"][0]["TargetGroupArn"])
        elb.modify_target_group_attributes(TargetGroupArn=arn, Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "1"}])
        return arn

    def weights(self) -> dict[str, int]:
        """Target group ARN -> weight of the listener's default forward, as ELBv2 reports it."""
        from shipyard.routers.alb import weights_of

        out = self.client("elbv2").describe_listeners(ListenerArns=[self.listener])
        return weights_of(out["Listeners"][0]["DefaultActions"])

    def service(self, name: str) -> dict[str, Any] | None:
        out = self.client("ecs").describe_services(cluster=self.cluster, services=[name], include=["TAGS"])
        found = [s for s in out["services"] if s["status"] == "ACTIVE"]
        return found[0] if found else None

    def task_definition(self, arn: str) -> dict[str, Any]:
        out = self.client("ecs").describe_task_definition(taskDefinition=arn, include=["TAGS"])
        return {**out["taskDefinition"], "tags": out.get("tags", [])}

    def revisions(self, family: str) -> list[str]:
        return list(self.client("ecs").list_task_definitions(familyPrefix=family, sort="ASC")["taskDefinitionArns"])


def build(endpoint: str) -> World:
    w = World(endpoint, uuid.uuid4().hex[:8])
    ec2, elb, iam = w.client("ec2"), w.client("elbv2"), w.client("iam")
    w.vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    w.subnets = [ec2.create_subnet(VpcId=w.vpc, CidrBlock=f"10.0.{i}.0/24",
                                   AvailabilityZone=f"{REGION}{'ac'[i]}")["Subnet"]["SubnetId"] for i in range(2)]
    w.sg = ec2.create_security_group(GroupName=f"api-{w.suffix}", Description="api tasks", VpcId=w.vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=w.sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": PORT, "ToPort": PORT, "IpRanges": [{"CidrIp": "10.0.0.0/16"}]}])
    w.closed_sg = ec2.create_security_group(GroupName=f"closed-{w.suffix}", Description="only 443",
                                            VpcId=w.vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=w.closed_sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    w.cluster = f"gli-{w.suffix}"
    w.client("ecs").create_cluster(clusterName=w.cluster)
    lb = elb.create_load_balancer(Name=f"gli-{w.suffix}", Subnets=w.subnets, SecurityGroups=[w.sg])
    lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
    w.blue, w.green = (elb.create_target_group(Name=f"api-{color}-{w.suffix}", Protocol="HTTP", Port=PORT,
                                               VpcId=w.vpc, TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
                       for color in ("blue", "green"))
    for tg in (w.blue, w.green):        # a short deregistration delay: drains in tests take a moment
        elb.modify_target_group_attributes(TargetGroupArn=tg, Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "1"}])
    for tg in (w.blue, w.green):        # what ECS would register for the two tasks of each color
        w.register(tg, 2)
    w.listener = elb.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=80, DefaultActions=[
        {"Type": "forward", "TargetGroupArn": w.blue}])["Listeners"][0]["ListenerArn"]
    w.execution_role = iam.create_role(RoleName=f"api-exec-{w.suffix}",
                                       AssumeRolePolicyDocument=ROLE_POLICY)["Role"]["Arn"]
    w.task_role = iam.create_role(RoleName=f"api-task-{w.suffix}", AssumeRolePolicyDocument=ROLE_POLICY)["Role"]["Arn"]
    w.secret_arn = w.client("secretsmanager").create_secret(
        # not under gli/prod/: moto's backends are one per process, and test_secrets_aws lists that prefix
        Name=f"ecs-world-{w.suffix}/DATABASE_URL", SecretString="postgres://api:s3cr3t-pw@db/gli")["ARN"]
    return w


MEDIA = "application/vnd.docker.distribution.manifest.v2+json"


def manifest(n: int) -> str:
    """A manifest of its own: moto's digest is the sha256 of the layer digests, so each n gets one."""
    return json.dumps({"schemaVersion": 2, "mediaType": MEDIA,
                       "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7,
                                  "digest": f"sha256:{n + 1:064x}"},
                       "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                   "size": 100 + n, "digest": f"sha256:{n + 7000:064x}"}]})


def next_second() -> None:
    """ECR keeps push times in whole seconds: a push after this one sorts after every earlier push."""
    from shipyard.testing.wait import wait_until

    now = int(time.time())
    wait_until(lambda: int(time.time()) > now, 3, "the clock to pass a second")
