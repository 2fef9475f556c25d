"""The task definition of a release, as a register_task_definition request: pure, no AWS call.

The image is the release's (by sha); the environment is the service's resolved variables; secrets go in
as `valueFrom` references only. A variable whose resolved value is a secret (the redactor knows every
secret value the resolver produced) and that is not mapped to a reference under `target.secrets` is
refused: a plaintext secret in a task definition is readable by anyone who may DescribeTaskDefinition,
and stays in every revision forever.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from shipyard.config.ecs import EcsTarget
from shipyard.errors import UsageError

REVISION_TAG = "shipyard:revision"
DIGEST_TAG = "shipyard:digest"
# Variables of shipyard's own that the container gets (its others, like SHIPYARD_RELEASE_DIR, are paths on
# this machine and mean nothing in a task).
OWN_VARS = ("SHIPYARD_SERVICE", "SHIPYARD_ENV", "SHIPYARD_REVISION")


def image_of(config: EcsTarget, revision: str, env: str) -> str:
    return config.image.format(registry=config.registry.rstrip("/"), sha=revision, short=revision[:8],
                               service=config.service, env=env)


def container_environment(config: EcsTarget, names: Iterable[str], resolved: Mapping[str, str],
                          secret_values: Iterable[str]) -> dict[str, str]:
    """The plain environment: `names` (the service's configured variables) with their resolved values, our
    own SHIPYARD_* and `target.environment`; a name mapped under `target.secrets` is left to its reference."""
    secrets = set(secret_values)
    env: dict[str, str] = {}
    for name in [*names, *OWN_VARS]:
        if name in config.secrets or name not in resolved:
            continue
        if resolved[name] in secrets and resolved[name]:
            raise UsageError(f"{name} holds a secret value: map it under target.secrets to the ARN of its "
                             "Secrets Manager secret or SSM parameter (a task definition never holds a secret)")
        env[name] = resolved[name]
    for name, value in config.environment.items():
        if value in secrets and value:
            raise UsageError(f"target.environment {name} holds a secret value: use target.secrets")
        env[name] = value
    return env


def task_definition(config: EcsTarget, revision: str, env: str, environment: Mapping[str, str]) -> dict[str, Any]:
    """The register_task_definition arguments of `revision`, tagged with the revision and a digest of the
    whole request (so that the same release with the same inputs reuses its revision instead of
    registering another)."""
    td, c = config.task_definition, config.task_definition.container
    container: dict[str, Any] = {
        "name": c.name, "image": image_of(config, revision, env), "essential": c.essential,
        "portMappings": [{"containerPort": c.port, "protocol": "tcp"}],
        "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
        "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(config.secrets.items())],
    }
    if c.command:
        container["command"] = list(c.command)
    if c.log_group:
        container["logConfiguration"] = {"logDriver": "awslogs", "options": {
            "awslogs-group": c.log_group, "awslogs-region": config.region or "",
            "awslogs-stream-prefix": config.service}}
    request: dict[str, Any] = {
        "family": td.family, "networkMode": "awsvpc", "requiresCompatibilities": [config.launch_type],
        "cpu": td.cpu, "memory": td.memory, "executionRoleArn": td.execution_role_arn,
        "containerDefinitions": [container],
    }
    if td.task_role_arn:
        request["taskRoleArn"] = td.task_role_arn
    request["tags"] = [{"key": REVISION_TAG, "value": revision}, {"key": DIGEST_TAG, "value": digest(request)}]
    return request


def digest(request: Mapping[str, Any]) -> str:
    body = {k: v for k, v in request.items() if k != "tags"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]


def tag(tags: Iterable[Mapping[str, str]] | None, key: str) -> str | None:
    return next((t.get("value") for t in tags or () if t.get("key") == key), None)
