"""What ECS uses: every image reference in the task definitions that services of the given clusters run
or keep warm, each with why it counts (which service, which task definition).

A service counts when it runs something (desired, running or pending tasks above 0) or carries the ECS
target's `shipyard:warm-until` tag with a time still ahead (the previous colour of a blue/green deploy,
kept for a rollback that is a traffic flip). Of a counted service, every task definition in its
deployments (PRIMARY and ACTIVE alike: a rolling update in flight runs both), its task sets (a CodeDeploy
or external controller) and the service's own taskDefinition count. A service scaled to 0 without a warm
tag protects nothing beyond the newest `keep` (docs/aws.md#ecr).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from shipyard.aws import calling
from shipyard.ecr.refs import ImageRef, parse_ref
from shipyard.errors import TargetError

WARM_TAG = "shipyard:warm-until"
"""The ECS target's tag on a service kept warm: epoch seconds (or an ISO-8601 time) until it is retired."""

DESCRIBE_MAX = 10       # DescribeServices takes at most 10 names


def warm_until(value: str | None) -> float | None:
    """The tag's time as epoch seconds, None when absent or unreadable (then the service is not warm)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def _tag(tags: Any, key: str) -> str | None:
    return next((str(t.get("value", "")) for t in tags or () if t.get("key") == key), None)


def why_counted(service: dict[str, Any], now: float) -> str | None:
    """Why a described service's task definitions are in use, or None when they are not."""
    name = service.get("serviceName", "?")
    if service.get("status") == "INACTIVE":
        return None
    until = warm_until(_tag(service.get("tags"), WARM_TAG))
    if until is not None and until > now:
        return f"service {name} (warm until {dt.datetime.fromtimestamp(until, dt.UTC):%Y-%m-%dT%H:%M:%SZ})"
    counts = [int(service.get(k) or 0) for k in ("desiredCount", "runningCount", "pendingCount")]
    return f"service {name}" if any(counts) else None


def task_definitions(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(task definition ARN, which part of the service names it)."""
    for dep in service.get("deployments") or ():
        if dep.get("taskDefinition"):
            yield str(dep["taskDefinition"]), f"{dep.get('status', 'deployment')} deployment"
    for ts in service.get("taskSets") or ():
        if ts.get("taskDefinition"):
            yield str(ts["taskDefinition"]), f"task set {ts.get('id', '?')}"
    if service.get("taskDefinition"):
        yield str(service["taskDefinition"]), "service"


def _call(call: str, resource: str, fn: Any, **kwargs: Any) -> Any:
    with calling("ecs", call, resource, error=TargetError):
        return fn(**kwargs)


def _clusters(ecs: Any, clusters: list[str] | None) -> list[str]:
    if clusters:
        return clusters
    found: list[str] = []
    for page in _call("ListClusters", "", ecs.get_paginator("list_clusters").paginate):
        found += page.get("clusterArns", [])
    return found


def collect(ecs: Any, clusters: list[str] | None, now: float) -> dict[ImageRef, str]:
    """Every image reference ECS uses in `clusters` (None or empty: every cluster of the region) -> why.

    Blocking (boto3): run it in a thread. A cluster that does not exist is an error, not an empty answer:
    pruning on a misspelt cluster name would protect nothing.
    """
    used: dict[str, str] = {}          # task definition ARN -> why
    for cluster in _clusters(ecs, clusters):
        described = _call("DescribeClusters", cluster, ecs.describe_clusters, clusters=[cluster])
        active = [c for c in described.get("clusters", []) if c.get("status") == "ACTIVE"]
        if not active and not clusters:
            continue        # ListClusters still lists a deleted (INACTIVE) cluster for a while
        if not active:
            raise TargetError(f"aws ecs DescribeClusters {cluster}: no such active cluster (nothing to protect "
                        "images with; check --cluster)")
        arns: list[str] = []
        for page in _call("ListServices", cluster, ecs.get_paginator("list_services").paginate, cluster=cluster):
            arns += page.get("serviceArns", [])
        for start in range(0, len(arns), DESCRIBE_MAX):
            chunk = arns[start:start + DESCRIBE_MAX]
            out = _call("DescribeServices", cluster, ecs.describe_services, cluster=cluster, services=chunk,
                        include=["TAGS"])
            for svc in out.get("services", []):
                why = why_counted(svc, now)
                if why is None:
                    continue
                for arn, part in task_definitions(svc):
                    used.setdefault(arn, f"{why}, {part}, {arn.rsplit('/', 1)[-1]}")
    refs: dict[ImageRef, str] = {}
    for arn, why in used.items():
        td = _call("DescribeTaskDefinition", arn, ecs.describe_task_definition, taskDefinition=arn)
        for container in td.get("taskDefinition", {}).get("containerDefinitions", []):
            ref = parse_ref(str(container.get("image") or ""))
            if ref is not None:
                refs.setdefault(ref, f"{why} container {container.get('name', '?')}")
    return refs
