"""The verdicts of shipyard.targets.ecs_status (pure): what ECS and ELBv2 report -> steady, failed, healthy.
These are the only places where moto's made-up status is read, so their edges are pinned here on
describe_services / describe_target_health shapes as AWS documents them."""

from __future__ import annotations

from typing import Any

from shipyard.targets.ecs_status import rollout, unhealthy

TD1 = "arn:aws:ecs:ap-northeast-2:123456789012:task-definition/gli-api:1"
TD2 = "arn:aws:ecs:ap-northeast-2:123456789012:task-definition/gli-api:2"


def service(td: str = TD2, desired: int = 2, running: int = 2, pending: int = 0, state: str = "COMPLETED",
            older: int = 0) -> dict[str, Any]:
    deployments = [{"taskDefinition": td, "status": "PRIMARY", "runningCount": running, "pendingCount": pending,
                    "rolloutState": state, "rolloutStateReason": "tasks failed to start" if state == "FAILED" else ""}]
    if older:
        deployments.append({"taskDefinition": TD1, "status": "ACTIVE", "runningCount": older, "pendingCount": 0})
    return {"taskDefinition": td, "desiredCount": desired, "runningCount": running + older, "pendingCount": pending,
            "deployments": deployments, "events": [{"message": "(service api) has reached a steady state."}]}


def targets(*states: str) -> list[dict[str, Any]]:
    return [{"Target": {"Id": f"10.0.0.{i}", "Port": 8080}, "TargetHealth": {"State": s}} for i, s in enumerate(states)]


def test_steady_only_with_the_wanted_revision_alone_at_its_count() -> None:
    assert rollout(service()).steady(TD2)
    assert not rollout(service()).steady(TD1)                          # another revision
    assert not rollout(service(running=1, pending=1, state="IN_PROGRESS")).steady(TD2)
    assert not rollout(service(older=1)).steady(TD2)                    # the old one still runs a task
    assert rollout(service(older=1)).others == (TD1,)


def test_a_failed_rollout_and_a_circuit_breaker_rollback_are_failures_with_a_reason() -> None:
    assert rollout(service(state="FAILED")).failed(TD2) == "tasks failed to start"
    assert "went back to gli-api:1" in (rollout(service(td=TD1)).failed(TD2) or "")
    assert rollout(service()).failed(TD2) is None


def test_health_needs_the_desired_count_running_and_as_many_healthy_targets() -> None:
    where = "gli-prod/api-blue"
    assert unhealthy(service(), where, targets("healthy", "healthy"), "api-blue") is None
    assert unhealthy(service(), where, None) is None                    # no load balancer: the count decides
    assert unhealthy(None, where, None) == "ECS service gli-prod/api-blue runs nothing"
    assert unhealthy(service(desired=0, running=0), where, None) == "ECS service gli-prod/api-blue runs nothing"
    assert unhealthy(service(running=1, pending=1, state="IN_PROGRESS"), where, targets("healthy")) == \
        "ECS service gli-prod/api-blue: gli-api:2: 1/2 running, 1 pending, in progress"
    assert unhealthy(service(state="FAILED"), where, targets("healthy", "healthy")) == \
        "ECS service gli-prod/api-blue: gli-api:2: 2/2 running, 0 pending, failed"
    assert unhealthy(service(), where, targets("healthy", "unhealthy", "draining"), "api-blue") == \
        "target group api-blue: 1 of 2 targets healthy (1 draining, 1 unhealthy)"
    assert unhealthy(service(), where, [], "api-blue") == "target group api-blue: 0 of 2 targets healthy"
    # during a rolling update the group holds old and new tasks: enough healthy ones is healthy
    assert unhealthy(service(), where, targets("healthy", "healthy", "draining"), "api-blue") is None
