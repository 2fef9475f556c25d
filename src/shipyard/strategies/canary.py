"""Shift traffic to the new revision in weighted steps, analysing each step before the next.

The canary set grows with its weight (ceil(N * weight / 100), at least one instance), as Argo Rollouts
does by default, so a 10% canary costs one instance, not a whole second fleet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shipyard.domain.plan import Analyze, Drain, RetireOld, Route, StartNew, Step, WaitHealthy
from shipyard.errors import UsageError
from shipyard.strategies.base import PlanInput


@dataclass(frozen=True)
class CanaryStep:
    weight: int
    pause: float = 0.0


@dataclass(frozen=True)
class Canary:
    steps: tuple[CanaryStep, ...] = (CanaryStep(10, 30.0), CanaryStep(50, 30.0), CanaryStep(100, 0.0))
    drain_timeout: float = 30.0
    name: str = "canary"

    def traffic_steps(self, inp: PlanInput) -> list[Step]:
        weights = [s.weight for s in self.steps]
        if not weights or any(not 0 < w <= 100 for w in weights) or weights != sorted(set(weights)):
            raise UsageError("canary: step weights must rise strictly, each between 1 and 100")
        out: list[Step] = []
        started = 0
        stages = list(self.steps)
        if stages[-1].weight != 100:
            stages.append(CanaryStep(100, 0.0))
        for stage in stages:
            want = inp.desired if stage.weight == 100 else max(1, math.ceil(inp.desired * stage.weight / 100))
            if want > started:
                out += [StartNew(want), WaitHealthy()]
                started = want
            if stage.weight == 100:
                out.append(Route(new=started, old=0, new_percent=100))
            else:
                out.append(Route(new=started, old=inp.current, new_percent=stage.weight))
            if stage.pause > 0:
                out.append(Analyze(stage.pause))
        out += [Drain(self.drain_timeout), RetireOld(keep=0)]
        return out
