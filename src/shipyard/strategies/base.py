"""What every strategy plans from, and the composer that wraps a strategy's traffic steps in lifecycle hooks.

Hook order follows AWS CodeDeploy's lifecycle, adapted to a release that is exported and built on the host:
before_install → (export + build) → after_install → migrate → start new → application_start →
validate_service (once the new set is healthy) → before_traffic → traffic moves → after_traffic →
application_stop (just before old instances leave service) → bake. on_failure and cleanup are not plan
steps: the engine runs them when a deployment fails and when it ends, whatever the outcome.

The pipeline (`pipeline: [test, build, scan, migrate]`) orders what comes before the first instance starts:
build is the Prepare step (with before_install and after_install around it), migrate the Migrate step, scan
the Scan step, any other name a command Stage. Nothing a stage does touches instances or traffic, so a
stage that fails leaves the service exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from shipyard.domain.plan import (
    Analyze,
    Migrate,
    Plan,
    Prepare,
    RetireOld,
    Route,
    RunHook,
    Scan,
    Stage,
    StartNew,
    Step,
    StopOld,
    WaitHealthy,
)


@dataclass(frozen=True)
class PlanInput:
    """The facts a planner needs; gathered by the engine so the planners stay free of I/O."""

    current: int                      # old instances serving now (0 on a first deployment)
    desired: int                      # instances of the new revision wanted
    bake: float = 0.0                 # seconds of analysis after all traffic moved
    hooks: frozenset[str] = field(default_factory=frozenset)  # names of configured hooks
    migrate: bool = False             # a migrate command is configured
    pipeline: tuple[str, ...] = ()    # stage names in order; () = build, then migrate if configured


class Strategy(Protocol):
    @property
    def name(self) -> str:
        """The strategy's config name (all_at_once, rolling, blue_green, canary)."""
        ...

    def traffic_steps(self, inp: PlanInput) -> list[Step]:
        """The steps that start the new set and move traffic to it (no hooks, no release prep)."""
        ...


def first_deploy_steps(inp: PlanInput) -> list[Step]:
    """With nothing serving there is nothing to protect: start everything, then route to it."""
    return [StartNew(inp.desired), WaitHealthy(), Route(new=inp.desired, old=0)]


def release_steps(inp: PlanInput) -> list[Step]:
    """What every plan starts with: the pipeline's stages in order (default: build, then migrate), the build
    being before_install, the export and build, after_install; a stage after the build runs in the release."""
    steps: list[Step] = []
    built = False
    for stage in inp.pipeline or (("build", "migrate") if inp.migrate else ("build",)):
        if stage == "build":
            if "before_install" in inp.hooks:
                steps.append(RunHook("before_install"))
            steps.append(Prepare())
            if "after_install" in inp.hooks:
                steps.append(RunHook("after_install"))
            built = True
        elif stage == "migrate":
            steps.append(Migrate())
        elif stage == "scan":
            steps.append(Scan(in_release=built))
        else:
            steps.append(Stage(stage, in_release=built))
    return steps


def compose(strategy: Strategy, inp: PlanInput) -> Plan:
    """Build the full plan: release preparation, hooks and migrate around the strategy's traffic steps."""
    core = first_deploy_steps(inp) if inp.current == 0 else strategy.traffic_steps(inp)
    steps = release_steps(inp)

    def hook(name: str) -> None:
        if name in inp.hooks:
            steps.append(RunHook(name))

    started = validated = traffic = stopped = False
    for step in core:
        if isinstance(step, (RetireOld, StopOld)) and not stopped:
            hook("application_stop")
            stopped = True
        if isinstance(step, Route) and step.new > 0 and not traffic:
            if not validated:
                hook("validate_service")
                validated = True
            hook("before_traffic")
            traffic = True
        steps.append(step)
        if isinstance(step, StartNew) and not started:
            hook("application_start")
            started = True
        if isinstance(step, WaitHealthy) and not validated:
            hook("validate_service")
            validated = True
    hook("after_traffic")
    if inp.bake > 0:
        steps.append(Analyze(inp.bake))
    return Plan(strategy=strategy.name, steps=tuple(_move_after_traffic(steps, inp)))


def _move_after_traffic(steps: list[Step], inp: PlanInput) -> list[Step]:
    """after_traffic belongs right after the last Route that gives the new set all traffic."""
    if "after_traffic" not in inp.hooks:
        return steps
    steps = [s for s in steps if not (isinstance(s, RunHook) and s.hook == "after_traffic")]
    last_full = max((i for i, s in enumerate(steps) if isinstance(s, Route) and s.old == 0), default=None)
    at = len(steps) if last_full is None else last_full + 1
    return [*steps[:at], RunHook("after_traffic"), *steps[at:]]
