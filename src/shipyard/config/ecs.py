"""`deploy.target: {type: ecs}` and `deploy.router: {type: alb}`: a service on Amazon ECS behind an ALB.

Shapes only; what each field does to AWS is in shipyard.targets.ecs and shipyard.routers.alb, and the walk
through GLI's setup in docs/aws.md.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from shipyard.config.base import StrictModel
from shipyard.config.durations import Duration
from shipyard.config.ecr import EcrPolicy

_ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{12}:\S+")
_SECRET_ARN = re.compile(r"arn:aws[a-z-]*:(secretsmanager|ssm):[a-z0-9-]+:\d{12}:(secret:|parameter/)\S+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
IMAGE_FIELDS = ("registry", "sha", "short", "service", "env")


def _arn(value: str, what: str) -> str:
    if not _ARN.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not an ARN (arn:aws:SERVICE:REGION:ACCOUNT:RESOURCE)")
    return value


class EcsContainer(StrictModel):
    """The one container of the task that serves traffic."""

    name: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_-]+$",
                      description="Container name in the task definition (the ALB target groups point at it).")
    port: int = Field(ge=1, le=65535, description="Port the container listens on (containerPort; the security "
                                                  "groups must allow it in, which preflight checks).")
    command: list[str] | None = Field(default=None, description="Command of the container (argv); default: the "
                                                                "image's CMD.")
    essential: bool = Field(default=True, description="Whether the task stops when this container stops.")
    log_group: str | None = Field(default=None, description="CloudWatch Logs group for the awslogs driver "
                                                            "(unset: no log configuration).")


class EcsTaskDefinition(StrictModel):
    """The task definition family shipyard registers a revision of for each release."""

    family: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_-]+$",
                        description="Task definition family; every release is a new revision of it.")
    cpu: str = Field(default="256", pattern=r"^\d+$", description="Task CPU units (Fargate: 256, 512, 1024...).")
    memory: str = Field(default="512", pattern=r"^\d+$", description="Task memory in MiB (Fargate: 512, 1024...).")
    execution_role_arn: str = Field(description="IAM role ECS uses to pull the image and read the secrets "
                                                "(preflight checks that it exists).")
    task_role_arn: str | None = Field(default=None, description="IAM role the application runs as (preflight "
                                                                "checks that it exists).")
    container: EcsContainer = Field(description="The serving container: name, port, command.")

    @field_validator("execution_role_arn", "task_role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        return None if value is None else _arn(value, "role")


class EcsDeployment(StrictModel):
    """ECS's own rolling update (deploymentConfiguration), used by mode `rolling`."""

    minimum_healthy_percent: int = Field(default=100, ge=0, le=100,
                                         description="Tasks that must stay running during the update, in "
                                                     "percent of desired_count.")
    maximum_percent: int = Field(default=200, ge=100, le=200,
                                 description="Tasks allowed at once during the update, in percent of "
                                             "desired_count.")
    circuit_breaker: bool = Field(default=True, description="Turn on ECS's deployment circuit breaker, which "
                                                            "stops an update whose tasks keep failing.")
    rollback: bool = Field(default=True, description="Let the circuit breaker roll the service back to the "
                                                     "previous task definition by itself.")


class EcsTarget(StrictModel):
    """Instances are ECS service revisions: in `rolling` one service updated by ECS; in `blue_green` two
    services (`<service>-blue`, `<service>-green`), one per target group, weighted by the ALB router."""

    RUNS_IMAGE: ClassVar[bool] = True     # the container runs the image's command: the service needs no `run`

    type: Literal["ecs"] = Field(description="Target kind; `ecs` runs the service's image on Amazon ECS.")
    cluster: str = Field(min_length=1, description="ECS cluster name (or ARN); preflight checks that it exists.")
    service: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$",
                         description="ECS service name; created if missing (in blue_green the base of the "
                                     "two services' names).")
    region: str | None = Field(default=None, description="AWS region; default: boto3's (AWS_REGION, profile).")
    endpoint_url: str | None = Field(default=None, description="Another endpoint for every AWS call (a VPC "
                                                               "endpoint, LocalStack, moto).")
    registry: str = Field(default="", description="Image registry filled into `{registry}` of `image`, "
                                                  "e.g. 123456789012.dkr.ecr.ap-northeast-2.amazonaws.com.")
    image: str = Field(description='Image of a release, with `{sha}` (or `{short}`) in it, e.g. '
                                   '"{registry}/api:{sha}"; also {service} and {env}.')
    task_definition: EcsTaskDefinition = Field(description="Family, size, roles and container of the task.")
    environment: dict[str, str] = Field(default_factory=dict, description="Plain variables added to the "
                                                                          "container's environment.")
    secrets: dict[str, str] = Field(default_factory=dict,
                                    description="Variable name -> ARN of a Secrets Manager secret or SSM "
                                                "parameter; the task definition holds only these references "
                                                "(valueFrom), never a value.")
    subnets: list[str] = Field(min_length=1, description="Subnet ids of the tasks (awsvpc); preflight checks "
                                                         "that they exist.")
    security_groups: list[str] = Field(min_length=1, description="Security group ids of the tasks; one must "
                                                                 "allow the container port in.")
    assign_public_ip: bool = Field(default=False, description="Give each task a public IP (Fargate in a "
                                                              "public subnet without NAT).")
    target_groups: list[str] = Field(default_factory=list, max_length=2,
                                     description="ALB target group ARNs: one for rolling, [blue, green] for "
                                                 "blue_green and canary.")
    mode: Literal["rolling", "blue_green"] = Field(
        default="rolling",
        description="rolling: ECS replaces the tasks of one service (its deployment, circuit breaker on); "
                    "blue_green: a second service on the other target group, traffic moved by the ALB router, "
                    "the previous one kept warm for keep_previous.")
    desired_count: int = Field(default=2, ge=1, le=1000, description="Tasks each service revision runs.")
    launch_type: Literal["FARGATE", "EC2"] = Field(default="FARGATE", description="ECS launch type.")
    deployment: EcsDeployment = Field(default_factory=EcsDeployment,
                                      description="ECS's rolling update settings (mode rolling).")
    steady_timeout: Duration = Field(default=900.0, gt=0, description="How long to wait for a service to "
                                                                      "reach steady state.")
    poll_interval: Duration = Field(default=5.0, gt=0, le=60, description="Time between looks at the "
                                                                         "service while waiting.")
    ecr: EcrPolicy | None = Field(default=None, description="ECR housekeeping of this service's images "
                                                            "(keep, repositories; docs/aws.md#ecr): `shipyard ecr "
                                                            "prune` does it, `shipyard aws policy` grants it; "
                                                            "unset: none.")

    @field_validator("secrets")
    @classmethod
    def _secret_refs(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a variable name")
            if not _SECRET_ARN.fullmatch(ref):
                # the value is not echoed: what was put where a reference goes may be the secret itself
                raise ValueError(f"secret {name}: not the ARN of a Secrets Manager secret or an SSM parameter "
                                 "(a reference, never the value)")
        return value

    @field_validator("target_groups")
    @classmethod
    def _tg_arns(cls, value: list[str]) -> list[str]:
        for arn in value:
            _arn(arn, "target group")
        if len(set(value)) != len(value):
            raise ValueError("target group listed twice")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if "{sha}" not in value and "{short}" not in value:
            raise ValueError("image must name the release: put {sha} (or {short}) in it, e.g. "
                             '"{registry}/api:{sha}"')
        fields = set(re.findall(r"{([^}]*)}", value)) - set(IMAGE_FIELDS)
        if fields:
            raise ValueError(f"unknown field {{{sorted(fields)[0]}}} in image (known: "
                             f"{', '.join('{' + f + '}' for f in IMAGE_FIELDS)})")
        return value

    @model_validator(mode="after")
    def _mode_fits(self) -> EcsTarget:
        if self.mode == "blue_green" and len(self.target_groups) != 2:
            raise ValueError("mode blue_green needs two target_groups: [blue, green]")
        both = set(self.environment) & set(self.secrets)
        if both:
            raise ValueError(f"{sorted(both)[0]} is both in environment and in secrets")
        return self

    @property
    def instances(self) -> int:
        """What the engine counts: one service revision (ECS runs desired_count tasks of it)."""
        return 1

    def strategy_problem(self, strategy: str) -> str | None:
        """Why `strategy` cannot drive this target, or None (config/service.py asks)."""
        if self.mode == "rolling" and strategy in ("blue_green", "canary"):
            return (f"strategy {strategy} moves traffic between two services: set the ecs target's mode: "
                    "blue_green with two target_groups (mode rolling is ECS's own rolling update of one service: "
                    "strategy rolling or all_at_once)")
        return None


class AlbRouter(StrictModel):
    """An Application Load Balancer listener whose forward action shipyard weights over target groups."""

    type: Literal["alb"] = Field(description="Router kind; `alb` sets an ALB listener's weighted forward action.")
    listener_arn: str = Field(description="ARN of the listener whose default action shipyard sets.")
    rule_arn: str | None = Field(default=None, description="A rule of that listener to set instead of its "
                                                           "default action.")
    region: str | None = Field(default=None, description="AWS region; default: boto3's (AWS_REGION, profile).")
    endpoint_url: str | None = Field(default=None, description="Another endpoint for every AWS call (a VPC "
                                                               "endpoint, LocalStack, moto).")
    max_drain: Duration = Field(default=300.0, ge=0, description="Upper bound of a drain, whatever the target "
                                                                 "group's deregistration delay says.")
    timeout: Duration = Field(default=10.0, gt=0, le=120, description="Bound on one ELBv2 call, retries "
                                                                      "included: an endpoint that never answers "
                                                                      "is an error, not a hang.")

    @field_validator("listener_arn", "rule_arn")
    @classmethod
    def _arns(cls, value: str | None) -> str | None:
        return None if value is None else _arn(value, "listener or rule")
