"""The plan for a release target (targets.base.ReleaseTarget: a static site, a command): all at once.

Such a target has no instances to start beside the old ones and no router to split traffic, so there is one
strategy: build, activate the release as a whole, check `status` (WaitHealthy), bake. The lifecycle hooks
keep their CodeDeploy order around the one switch: before_install, (build), after_install, migrate,
before_traffic, application_stop (the old release leaves service), activate, application_start,
validate_service (once healthy), after_traffic, bake. A manual rollback makes a previous release live again
without building it (unless the target needs its directory) and, like a traffic flip, runs no hooks.
"""

from __future__ import annotations

from shipyard.domain.plan import Activate, Analyze, Plan, Prepare, RunHook, Step, WaitHealthy
from shipyard.strategies.base import PlanInput, release_steps

NAME = "all_at_once"


def release_plan(inp: PlanInput) -> Plan:
    def hooks(*names: str) -> list[Step]:
        return [RunHook(n) for n in names if n in inp.hooks]

    steps = [*release_steps(inp), *hooks("before_traffic", "application_stop"), Activate(),
             *hooks("application_start"), WaitHealthy(), *hooks("validate_service", "after_traffic")]
    if inp.bake > 0:
        steps.append(Analyze(inp.bake))
    return Plan(NAME, tuple(steps))


def restore_plan(needs_release: bool) -> Plan:
    """Make a previous release live again; `needs_release`: the target runs something in its directory."""
    steps: list[Step] = [Prepare()] if needs_release else []
    return Plan("reactivate", (*steps, Activate(restore=True), WaitHealthy()))
