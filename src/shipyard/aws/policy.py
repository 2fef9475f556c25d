"""The least-privilege IAM policy a service's configuration needs: `shipyard aws policy SERVICE`.

Pure: config in, policy document out, no AWS call. Each part that reaches AWS contributes statements
(what it calls, on which resources): the secrets providers (read: the deploy needs values, never writes),
a CloudWatch metric source, CloudWatch alarms read as rollback triggers, the build stage's ECR image tags,
ECR housekeeping of a target with an `ecr` policy, and every target or router kind whose `Kind.iam` says
what it calls. Resources are ARNs as narrow as the config allows; the account is
`--account` (default `*`), the region the config's, else `*`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

AWS_SECRET_PROVIDERS = ("aws-secretsmanager", "aws-ssm")


@dataclass(frozen=True)
class Scope:
    """What an ARN is filled with: the account and the default region."""

    account: str = "*"
    region: str = "*"

    def arn(self, service: str, resource: str, region: str | None = None) -> str:
        return f"arn:aws:{service}:{region or self.region}:{self.account}:{resource}"


@dataclass(frozen=True)
class Statement:
    """One Allow statement: why (its Sid), the actions and the resources."""

    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...] = ("*",)

    def to_dict(self) -> dict[str, Any]:
        return {"Sid": self.sid, "Effect": "Allow", "Action": sorted(set(self.actions)),
                "Resource": sorted(set(self.resources)) if len(set(self.resources)) > 1 else self.resources[0]}


Contribution = Callable[[Any, Scope], list[Statement]]
"""A target/router kind's contribution: (its validated config model, scope) -> statements."""


def _secrets(cfg: Any, envs: Iterable[str], scope: Scope) -> list[Statement]:
    settings = cfg.secrets
    used = [p for p in (settings.provider, *settings.also) if p in AWS_SECRET_PROVIDERS]
    out: list[Statement] = []
    region = settings.region
    for provider in dict.fromkeys(used):
        if provider == "aws-secretsmanager":
            template = settings.prefix if settings.prefix is not None else "{project}/{env}/"
            arns = [scope.arn("secretsmanager", f"secret:{_fill(template, cfg.project, env)}*", region)
                    for env in envs]
            out.append(Statement("SecretsManagerRead", ("secretsmanager:GetSecretValue",
                                                        "secretsmanager:DescribeSecret"), tuple(arns)))
        else:
            template = settings.prefix if settings.prefix is not None else "/{project}/{env}/"
            arns = []
            for env in envs:
                path = "/" + _fill(template, cfg.project, env).strip("/")
                arns += [scope.arn("ssm", f"parameter{path}", region), scope.arn("ssm", f"parameter{path}/*", region)]
            out.append(Statement("SsmParametersRead", ("ssm:GetParametersByPath",), tuple(arns)))
    return out


def _fill(template: str, project: str, env: str) -> str:
    return template.replace("{project}", project).replace("{env}", env)


def _monitoring(settings: Any, scope: Scope) -> list[Statement]:
    out: list[Statement] = []
    if getattr(settings.metrics, "type", None) == "cloudwatch":
        # GetMetricData has no resource-level permission: AWS only accepts "*" for it.
        out.append(Statement("CloudWatchMetricsRead", ("cloudwatch:GetMetricData",)))
    refs = [a for a in settings.alarms.values() if hasattr(a, "cloudwatch")]
    if refs:
        out.append(Statement("CloudWatchAlarmsRead", ("cloudwatch:DescribeAlarms",),
                             tuple(scope.arn("cloudwatch", f"alarm:{r.cloudwatch}", r.region) for r in refs)))
    return out


def _kinds(settings: Any, scope: Scope) -> list[Statement]:
    from shipyard.plugins import kinds

    out: list[Statement] = []
    for group, model in (("targets", settings.target), ("routers", settings.router)):
        if model is None:
            continue
        kind = kinds(group).get(getattr(model, "type", ""))   # type: ignore[arg-type]
        iam = getattr(kind, "iam", None)
        if iam is not None:
            out += iam(model, scope)
    return out


def _repo_arn(scope: Scope, repository: str, region: str | None, registry_id: str | None = None) -> str:
    return f"arn:aws:ecr:{region or scope.region}:{registry_id or scope.account}:repository/{repository}"


def ecr_tagging_statements(image: Any, scope: Scope) -> list[Statement]:
    """The build stage's image (config.pipeline.BuildImage): shipyard reads the pushed manifest and puts it
    under the other tags. The build's own `docker push` runs with the same credentials, so its actions are
    here too (GetAuthorizationToken has no resource-level permission)."""
    repo = _repo_arn(scope, image.repository, image.region, image.registry_id)
    return [Statement("EcrBuildPush", ("ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload",
                                       "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"), (repo,)),
            Statement("EcrLogin", ("ecr:GetAuthorizationToken",)),
            Statement("EcrImageTags", ("ecr:BatchGetImage", "ecr:PutImage"), (repo,))]


def ecr_prune_statements(repositories: Iterable[str], clusters: Iterable[str], scope: Scope,
                         region: str | None = None, registry_id: str | None = None) -> list[Statement]:
    """ECR housekeeping (shipyard.ecr.prune): list and delete images of `repositories`, and read what the
    services of `clusters` run (no clusters: every cluster, which ListClusters needs). The ECS target calls
    this with its `ecr` policy's repositories (default: its image's) and its cluster."""
    names = [c.rsplit("/", 1)[-1] for c in clusters]
    repos = tuple(_repo_arn(scope, r, region, registry_id) for r in dict.fromkeys(repositories))
    out = [Statement("EcrPrune", ("ecr:DescribeImages", "ecr:BatchDeleteImage"), repos),
           # DescribeTaskDefinition has no resource-level permission: AWS only accepts "*" for it.
           Statement("EcrPruneTaskDefinitions", ("ecs:DescribeTaskDefinition",))]
    if names:
        out += [Statement("EcrPruneClusters", ("ecs:DescribeClusters", "ecs:ListServices"),
                          tuple(scope.arn("ecs", f"cluster/{n}", region) for n in names)),
                Statement("EcrPruneServices", ("ecs:DescribeServices",),
                          tuple(scope.arn("ecs", f"service/{n}/*", region) for n in names))]
    else:
        out.append(Statement("EcrPruneAllClusters", ("ecs:ListClusters", "ecs:DescribeClusters",
                                                     "ecs:ListServices", "ecs:DescribeServices")))
    return out


def ecr_statements(settings: Any, scope: Scope) -> list[Statement]:
    """The build's image tags, and the housekeeping of a target that carries an `ecr` policy (the ECS
    target's `target.ecr`: config.ecr.EcrPolicy) next to its `cluster` and `image`."""
    from shipyard.ecr.refs import repository_of

    out: list[Statement] = []
    image = getattr(settings, "image", None)
    if image is not None:
        out += ecr_tagging_statements(image, scope)
    target = settings.target
    housekeeping = getattr(target, "ecr", None)
    if housekeeping is not None:
        repos = list(housekeeping.repositories or [])
        if not repos:
            fields = {"service": str(getattr(settings, "service", "")), "env": str(getattr(settings, "env", ""))}
            own = repository_of(str(getattr(target, "image", "")), fields)
            repos = [own] if own else []
        cluster = getattr(target, "cluster", None)
        out += ecr_prune_statements(repos, [cluster] if cluster else [], scope, getattr(target, "region", None))
    return out


def merge(statements: Iterable[Statement]) -> list[Statement]:
    """Statements with the same Sid and actions become one, their resources joined (one per env...)."""
    merged: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for st in statements:
        merged.setdefault((st.sid, tuple(sorted(set(st.actions)))), []).extend(st.resources)
    return [Statement(sid, actions, tuple(dict.fromkeys(res))) for (sid, actions), res in merged.items()]


def policy(cfg: Any, settings: list[Any], scope: Scope) -> dict[str, Any]:
    """The policy document for one service's settings in each of its environments (engine ServiceSettings)."""
    statements = _secrets(cfg, [s.env for s in settings], scope)
    for s in settings:
        statements += _monitoring(s, scope) + _kinds(s, scope) + ecr_statements(s, scope)
    merged = merge(statements)
    return {"Version": "2012-10-17", "Statement": [st.to_dict() for st in merged]}


__all__ = ["Contribution", "Scope", "Statement", "ecr_prune_statements", "ecr_statements", "ecr_tagging_statements",
           "merge", "policy"]
