"""Planners are pure: check the invariants every plan must keep by simulating it on counts."""

from __future__ import annotations

import itertools

import pytest

from shipyard.domain.plan import (
    Analyze,
    Drain,
    Migrate,
    Prepare,
    RetireOld,
    Route,
    RunHook,
    StartNew,
    StopOld,
    WaitHealthy,
    step_from_dict,
)
from shipyard.errors import UsageError
from shipyard.strategies import AllAtOnce, BlueGreen, Canary, CanaryStep, PlanInput, Rolling, compose

ALL_HOOKS = frozenset({"application_stop", "before_install", "after_install", "application_start",
                       "validate_service", "before_traffic", "after_traffic"})


def simulate(plan_steps, current: int):
    """Replay a plan on counts; return the minimum number serving and the peak number running."""
    started = healthy = 0
    routed_new = 0
    routed_old = current
    old_running = current
    min_serving = current
    peak_running = current
    for step in plan_steps:
        if isinstance(step, StartNew):
            assert step.total >= started, "StartNew never shrinks the new set"
            started = step.total
        elif isinstance(step, WaitHealthy):
            healthy = started
        elif isinstance(step, Route):
            assert step.new <= healthy, "traffic only goes to instances that passed their health check"
            assert step.old <= old_running, "cannot route to old instances that were retired"
            routed_new, routed_old = step.new, step.old
        elif isinstance(step, RetireOld):
            assert step.keep >= routed_old, "never retire an instance that still gets traffic"
            old_running = step.keep
        elif isinstance(step, StopOld):
            old_running = routed_old = 0
        serving = routed_new + min(routed_old, old_running)
        if current and isinstance(step, (Route, RetireOld)):
            min_serving = min(min_serving, serving)
        peak_running = max(peak_running, started + routed_old)
    return min_serving, peak_running, routed_new, routed_old


@pytest.mark.parametrize("n,batch,surge,unavail", [
    (n, b, s, u) for n, b, s, u in itertools.product([1, 2, 3, 5], [1, 2, 3], [0, 1, 2], [0, 1, 2]) if s + u > 0])
def test_rolling_keeps_its_budgets(n: int, batch: int, surge: int, unavail: int) -> None:
    plan = compose(Rolling(batch_size=batch, max_surge=surge, max_unavailable=unavail), PlanInput(current=n, desired=n))
    min_serving, peak, new, old = simulate(plan.steps, n)
    assert (new, old) == (n, 0), "ends with every request on the new set"
    assert min_serving >= n - unavail
    assert peak <= n + max(surge, 0) + batch  # running new + still-routed old never far above the surge budget
    routes = [s for s in plan.steps if isinstance(s, Route)]
    assert all(not (isinstance(a, Route) and isinstance(b, Route))
               for a, b in itertools.pairwise(plan.steps)), "no back-to-back routes"
    assert routes, "traffic moves"


def test_rolling_default_replaces_one_at_a_time() -> None:
    steps = Rolling().traffic_steps(PlanInput(current=3, desired=3))
    routes = [(s.new, s.old) for s in steps if isinstance(s, Route)]
    assert routes == [(1, 2), (2, 1), (3, 0)]
    assert [s.total for s in steps if isinstance(s, StartNew)] == [1, 2, 3]
    assert sum(isinstance(s, Drain) for s in steps) == 3


def test_rolling_rejects_impossible_budgets() -> None:
    with pytest.raises(UsageError, match="max_surge"):
        Rolling(max_surge=0, max_unavailable=0).traffic_steps(PlanInput(current=2, desired=2))
    with pytest.raises(UsageError, match="batch_size"):
        Rolling(batch_size=0).traffic_steps(PlanInput(current=2, desired=2))


def test_blue_green_switches_at_once_after_the_whole_set_is_healthy() -> None:
    steps = BlueGreen().traffic_steps(PlanInput(current=3, desired=3))
    assert steps[:3] == [StartNew(3), WaitHealthy(), Route(new=3, old=0, new_percent=100)]
    assert isinstance(steps[3], Drain) and steps[4] == RetireOld(keep=0)


def test_canary_scales_with_weight_and_analyzes_each_step() -> None:
    c = Canary(steps=(CanaryStep(10, 30), CanaryStep(50, 30), CanaryStep(100, 0)))
    steps = c.traffic_steps(PlanInput(current=4, desired=4))
    routes = [(s.new, s.old, s.new_percent) for s in steps if isinstance(s, Route)]
    assert routes == [(1, 4, 10), (2, 4, 50), (4, 0, 100)]
    assert [s.seconds for s in steps if isinstance(s, Analyze)] == [30, 30]
    min_serving, _, new, old = simulate(steps, 4)
    assert (new, old) == (4, 0) and min_serving >= 4


def test_canary_appends_full_promotion_and_validates_weights() -> None:
    steps = Canary(steps=(CanaryStep(25, 1),)).traffic_steps(PlanInput(current=2, desired=2))
    assert [s for s in steps if isinstance(s, Route)][-1] == Route(new=2, old=0, new_percent=100)
    for bad in ((CanaryStep(50, 0), CanaryStep(10, 0)), (CanaryStep(0, 0),), (CanaryStep(120, 0),), ()):
        with pytest.raises(UsageError):
            Canary(steps=bad).traffic_steps(PlanInput(current=2, desired=2))


def test_all_at_once_stops_first() -> None:
    assert AllAtOnce().traffic_steps(PlanInput(current=2, desired=2))[0] == StopOld()


@pytest.mark.parametrize("strategy", [AllAtOnce(), Rolling(), BlueGreen(), Canary()])
def test_first_deploy_just_starts_and_routes(strategy) -> None:
    plan = compose(strategy, PlanInput(current=0, desired=3))
    assert [type(s) for s in plan.steps] == [Prepare, StartNew, WaitHealthy, Route]


@pytest.mark.parametrize("strategy", [AllAtOnce(), Rolling(), BlueGreen(), Canary()])
def test_hooks_follow_the_codedeploy_order(strategy) -> None:
    plan = compose(strategy, PlanInput(current=3, desired=3, bake=10, hooks=ALL_HOOKS, migrate=True))
    kinds = [s.hook if isinstance(s, RunHook) else s.kind for s in plan.steps]
    order = ["before_install", "prepare", "after_install", "migrate", "application_start", "validate_service",
             "before_traffic", "after_traffic"]
    positions = [kinds.index(k) for k in order]
    assert positions == sorted(positions), kinds
    assert kinds.count("application_stop") == 1
    first_route = next(i for i, s in enumerate(plan.steps) if isinstance(s, Route) and s.new > 0)
    assert kinds.index("migrate") < first_route and kinds.index("before_traffic") < first_route
    last_full = max(i for i, s in enumerate(plan.steps) if isinstance(s, Route) and s.old == 0)
    assert kinds.index("after_traffic") == last_full + 1
    assert isinstance(plan.steps[-1], Analyze) and plan.steps[-1].seconds == 10
    assert isinstance(plan.steps[kinds.index("migrate")], Migrate)


def test_hooks_not_configured_are_not_planned() -> None:
    plan = compose(Rolling(), PlanInput(current=3, desired=3))
    assert not any(isinstance(s, RunHook) for s in plan.steps)


def test_plans_round_trip_through_storage() -> None:
    plan = compose(Canary(), PlanInput(current=3, desired=3, bake=5, hooks=ALL_HOOKS, migrate=True))
    assert tuple(step_from_dict(d) for d in plan.to_list()) == plan.steps
