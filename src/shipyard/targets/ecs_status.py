"""The one adapter between ECS's *reported status* and shipyard: how a service's rollout is read.

Tests run against moto, which keeps ECS's state but runs no containers. So the ECS target's behaviour
splits in two, and this module is the whole of the second part:

Checked against ECS's state (moto keeps it exactly; tests assert on it):
  task definition revisions (image by sha, environment, secrets as valueFrom, tags), services (created
  if missing, the task definition they point at, desired count, network and load balancer settings,
  tags), listener actions and their weights, target groups and their deregistration delay, the IAM
  roles, subnets and security group rules that preflight reads.

Read from ECS's reported status (moto makes it up; tests only *drive* it, they cannot verify it):
  runningCount / pendingCount / desiredCount of a service, its deployments and their rolloutState
  (IN_PROGRESS, COMPLETED, FAILED by the circuit breaker), service events. moto reports running tasks
  from its MOTO_ECS_SERVICE_RUNNING setting, sets rolloutState once when a service is created and does not
  add a deployment on update_service; `rollout()` reads both shapes the same way (below). And the target
  health of a service's target group (DescribeTargetHealth), which `unhealthy()` turns into an instance's
  health: ECS registers each task in the group and the ALB health-checks it; moto's ECS registers nothing
  and moto calls every registered target healthy, so tests register the targets themselves.

Everything here is pure: dictionaries from describe_services / describe_target_health in, a verdict out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Rollout:
    """Where a service stands with one task definition, as ECS reports it."""

    task_definition: str            # what the service points at now
    desired: int
    running: int
    pending: int
    state: str                      # the rolloutState of the deployment of `task_definition` ("" unknown)
    reason: str
    others: tuple[str, ...] = ()    # task definitions of older deployments that still run tasks
    events: tuple[str, ...] = field(default=())   # newest first, as ECS lists them
    service_running: int = 0        # the service-level runningCount (every deployment's tasks)

    def steady(self, wanted: str) -> bool:
        """The service runs `wanted` only, at its desired count (ECS's "steady state")."""
        return (self.task_definition == wanted and self.state != "FAILED" and not self.others
                and self.running >= self.desired and self.pending == 0
                and self.state in ("COMPLETED", ""))

    def failed(self, wanted: str) -> str | None:
        """Why the rollout to `wanted` ended failed (circuit breaker, rolled back), or None."""
        if self.state == "FAILED":
            return self.reason or "the deployment failed"
        if self.task_definition != wanted:
            return f"the service went back to {short(self.task_definition)} (circuit breaker rollback)"
        return None

    def progress(self) -> str:
        return (f"{short(self.task_definition)}: {self.running}/{self.desired} running, {self.pending} pending"
                + (f", {self.state.lower().replace('_', ' ')}" if self.state else "")
                + (f", still running {', '.join(map(short, self.others))}" if self.others else ""))


def short(task_definition: str) -> str:
    """`family:revision` of a task definition ARN."""
    return task_definition.rsplit("/", 1)[-1]


def rollout(service: dict[str, Any]) -> Rollout:
    """Read a describe_services entry. The deployment that names the service's task definition gives the
    rolloutState; if none names it (moto, which keeps the first deployment on update), the service-level
    counts alone decide. Older deployments count while they still run tasks (ACTIVE/DRAINING)."""
    current = str(service.get("taskDefinition", ""))
    deployments = list(service.get("deployments") or [])
    mine = next((d for d in deployments if d.get("taskDefinition") == current), None)
    others = tuple(str(d.get("taskDefinition")) for d in deployments
                   if d.get("status") in ("ACTIVE", "DRAINING") and d.get("taskDefinition") != current
                   and int(d.get("runningCount", 0)) > 0)
    if mine is not None:
        running, pending = int(mine.get("runningCount", 0)), int(mine.get("pendingCount", 0))
        state, reason = str(mine.get("rolloutState", "")), str(mine.get("rolloutStateReason", ""))
    else:
        running, pending = int(service.get("runningCount", 0)), int(service.get("pendingCount", 0))
        state, reason = "", ""
    events = tuple(str(e.get("message", "")) for e in (service.get("events") or [])[:5])
    return Rollout(current, int(service.get("desiredCount", 0)), running, pending, state, reason, others, events,
                   int(service.get("runningCount", 0)) + int(service.get("pendingCount", 0)))


def old_deployments(service: dict[str, Any]) -> list[str]:
    """Task definitions of the service's older deployments that still run tasks (a rollout mid-way)."""
    return list(rollout(service).others)


def unhealthy(service: dict[str, Any] | None, where: str, target_health: list[dict[str, Any]] | None,
              group: str = "") -> str | None:
    """Why a service revision is not healthy, or None (pure). Healthy is what ECS and ELBv2 report: the
    service runs its desired count (no failed rollout) and, behind a target group (`target_health` is its
    DescribeTargetHealth descriptions, `group` its name; None without one), at least that many targets
    are `healthy`."""
    if service is None or int(service.get("desiredCount", 0)) == 0:
        return f"ECS service {where} runs nothing"
    r = rollout(service)
    if r.state == "FAILED" or r.running < r.desired:
        return f"ECS service {where}: {r.progress()}"
    if target_health is None:
        return None                          # no load balancer: ECS's running count is all there is
    states = [str((d.get("TargetHealth") or {}).get("State", "")) for d in target_health]
    healthy = states.count("healthy")
    if healthy >= r.desired:
        return None
    others = ", ".join(f"{states.count(st)} {st}" for st in sorted(set(states) - {"healthy"}))
    return f"target group {group}: {healthy} of {r.desired} targets healthy" + (f" ({others})" if others else "")
